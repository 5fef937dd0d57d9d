"""`kpictl migrate --sql --from REV` / `--to FROM:TO`: the SQL for a database at REV, no database
touched; bad combinations are usage errors (2) with one line."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli


def upgrades(sql: str) -> list[str]:
    return [
        line.removeprefix("-- Running upgrade ")
        for line in sql.splitlines()
        if line.startswith("-- Running upgrade ")
    ]


@pytest.mark.parametrize(
    "args",
    [["--from", "0003"], ["--to", "0003:head"], ["--from", "0003", "--to", "head"]],
)
def test_sql_from_a_revision_prints_only_the_later_revisions(args):
    result = run_cli(["migrate", "--sql", *args], "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 0, result.output
    assert upgrades(result.stdout) == [
        "0003 -> 0004",
        "0004 -> 0005",
        "0005 -> 0006",
        "0006 -> 0007",
        "0007 -> 0008",
        "0008 -> 0009",
    ]
    assert "CREATE TABLE kpi_snapshots (" not in result.stdout  # 0001's table is not made again


def test_sql_from_a_range_and_with_no_database_configured(tmp_path):
    result = run_cli(["migrate", "--sql", "--to", "0003:0005"], env={"INVOCATION_ID": "x"})
    assert result.exit_code == 0, result.output  # --sql needs no database, so none is refused
    assert upgrades(result.stdout) == ["0003 -> 0004", "0004 -> 0005"]


def test_the_sql_of_a_new_database_names_each_constraint_once():
    result = run_cli(["migrate", "--sql"], "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 0
    before_0007 = result.stdout.split("Running upgrade 0006 -> 0007")[0]
    assert "CONSTRAINT ck_kpi_snapshots_level CHECK" in before_0007
    assert "CONSTRAINT ck_kpi_aggregation_jobs_status CHECK" in before_0007
    assert "_ck_" not in before_0007


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "0005"], "use it with --sql"),
        (
            ["--sql", "--from", "0005", "--downgrade", "base"],
            "use it with --sql, without --downgrade",
        ),
        (["--sql", "--from", "0003", "--to", "0004:head"], "give the start once"),
        (["--sql", "--to", "0006:0003"], "--from 0006 is after 0003"),
        (["--sql", "--from", "0042"], "unknown revision '0042'"),
        (["--sql", "--from", "0003", "--with-sources"], "--with-sources creates source tables"),
    ],
)
def test_bad_combinations_are_usage_errors(args, message):
    result = run_cli(["migrate", *args], "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
