"""`kpictl history export`: golden files (written by hand), selection, grains, streaming,
atomic --output.

The golden files in tests/golden/ are the exact bytes expected; the month and quarter means in
them are worked out in the comments of `acme`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from kpictl.cli.render.history import write_json
from kpictl.services.history.export import write_atomically
from kpictl.services.history.tenants import Tenant
from tests import factories as f
from tests.conftest import ENV_KEYS, run_cli, run_process

GOLDEN = Path(__file__).parent.parent / "golden"
ACME_ID = "11111111-1111-4111-8111-111111111111"
D = Decimal
COLUMNS = ("as_of", "aiv_pct", "ati_pct", "crs_pct", "elasticity_usd_per_point",
           "vli_integrity_pct", "hrp_pct")  # fmt: skip

# Month means: January = rows 2 and 3: aiv (11.25 + 12.00) / 2 = 11.625 -> 11.63, ati 21.00 (the
# NULL is left out), crs 30.50, elasticity (-5 + 0) / 2 = -2.50, vli (87.51 + 90) / 2 = 88.755
# -> 88.76, hrp (12.35 + 50) / 2 = 31.175 -> 31.18.
# Quarter means, Q1 2026 = rows 2, 3, 4: aiv 36.25 / 3 = 12.083 -> 12.08, ati 21.50, crs 31.00,
# elasticity 5 / 3 = 1.667 -> 1.67, vli 257.51 / 3 = 85.837 -> 85.84, hrp 31.18.
ACME_ROWS = [
    (date(2025, 12, 29), D("10.00"), D("20.50"), None, D("1234.50"), D("100.00"), None),
    (date(2026, 1, 5), D("11.25"), D("21.00"), D("30.00"), D("-5.00"), D("87.51"), D("12.35")),
    (date(2026, 1, 12), D("12.00"), None, D("31.00"), D("0.00"), D("90.00"), D("50.00")),
    (date(2026, 2, 2), D("13.00"), D("22.00"), D("32.00"), D("10.00"), D("80.00"), None),
    (date(2026, 4, 6), D("14.00"), D("23.00"), D("33.00"), D("20.00"), D("70.00"), D("25.00")),
]


@pytest.fixture
def acme(engine):
    """acme with five weeks of history, and another tenant with rows on the same weeks."""
    with engine.begin() as conn:
        f.tenant(conn, "acme", "A", id=uuid.UUID(ACME_ID))
        other = f.tenant(conn, "other", "O")
        f.history_rows(
            conn, uuid.UUID(ACME_ID), [dict(zip(COLUMNS, row, strict=True)) for row in ACME_ROWS]
        )
        f.history_rows(
            conn,
            other,
            [dict(zip(COLUMNS, (row[0], D("99.99"), *row[2:]), strict=True)) for row in ACME_ROWS],
        )
    return ACME_ID


def export(db_url, *args: str):
    return run_cli(["history", "export", *args], db_url)


def golden(name: str) -> str:
    return (GOLDEN / name).read_bytes().decode("utf-8")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ([], "history_week.csv"),
        (["--limit", "2"], "history_week_limit2.csv"),
        (["--grain", "month"], "history_month.csv"),
        (["--grain", "quarter"], "history_quarter.csv"),
        (["--format", "json"], "history_week.json"),
        (["--since", "2026-02-02", "--until", "2026-04-06"], "history_week_limit2.csv"),
        (["--since", "2026-01-13", "--limit", "10"], "history_week_limit2.csv"),
        (["--since", "2030-01-01", "--format", "json"], "history_empty.json"),
    ],
)
def test_golden(db_url, acme, args, name):
    result = export(db_url, "--tenant", "acme", "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == golden(name)


def test_golden_files_are_what_the_spec_says():
    week = golden("history_week.csv")
    assert "\r" not in week and week.endswith("\n")
    assert week.splitlines()[0] == ",".join(COLUMNS)
    document = json.loads(golden("history_week.json"))
    assert set(document) == {"status", "tenant", "data"}
    assert document["tenant"] == {"id": ACME_ID, "slug": "acme"}
    assert [set(row) for row in document["data"]] == [set(COLUMNS)] * 5
    assert document["data"][0]["crs_pct"] is None and document["data"][1]["hrp_pct"] == 12.35


def test_month_limit_counts_grouped_rows(db_url, acme):
    result = export(db_url, "--tenant", "acme", "--grain", "month", "--limit", "2")
    assert result.stdout.splitlines()[1:] == golden("history_month.csv").splitlines()[3:]


def test_by_uuid_equals_by_slug(db_url, acme):
    by_slug = export(db_url, "--tenant", "acme", "--format", "json")
    by_uuid = export(db_url, "--tenant", ACME_ID, "--format", "json")
    by_upper = export(db_url, "--tenant", ACME_ID.upper(), "--format", "json")
    assert by_slug.exit_code == by_uuid.exit_code == by_upper.exit_code == 0
    assert by_slug.stdout == by_uuid.stdout == by_upper.stdout == golden("history_week.json")


def test_default_limit_is_52_newest(engine, db_url, acme):
    with engine.begin() as conn:
        tenant_id = f.tenant(conn, "long", "L")
        conn.execute(
            text(
                "INSERT INTO kpi_history (tenant_id, as_of, aiv_pct) SELECT :t, "
                "DATE '2024-01-01' + 7 * g, g FROM generate_series(0, 59) AS g"
            ),
            {"t": tenant_id},
        )
    lines = export(db_url, "--tenant", "long").stdout.splitlines()
    assert len(lines) == 53
    # weeks 8..59 (the newest 52), oldest first: 2024-01-01 + 56 days = 2024-02-26
    assert lines[1] == "2024-02-26,8.00,,,,,"
    assert lines[-1] == "2025-02-17,59.00,,,,,"  # + 413 days, 2024 is a leap year
    everything = export(db_url, "--tenant", "long", "--all").stdout.splitlines()
    assert len(everything) == 61 and everything[1] == "2024-01-01,0.00,,,,,"


def test_empty_history(engine, db_url, acme):
    with engine.begin() as conn:
        f.tenant(conn, "fresh", "F")
    result = export(db_url, "--tenant", "fresh")
    assert (result.exit_code, result.stdout) == (0, golden("history_empty.csv"))
    result = export(db_url, "--tenant", "fresh", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["data"] == []


def test_table_format(db_url, acme):
    result = export(db_url, "--tenant", "acme", "--format", "table", "--limit", "1")
    assert result.exit_code == 0
    assert "acme" in result.stdout and "2026-04-06" in result.stdout and " 14.00" in result.stdout
    assert "2026-02-02" not in result.stdout


@pytest.mark.parametrize("argument", ["nobody", "00000000-0000-4000-8000-000000000000"])
def test_unknown_tenant(db_url, acme, tmp_path, argument):
    target = tmp_path / "out.csv"
    target.write_text("previous\n")
    result = export(db_url, "--tenant", argument, "--output", str(target))
    assert result.exit_code == 1
    assert f"unknown tenant: {argument}" in result.stderr and result.stdout == ""
    assert target.read_text() == "previous\n"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--tenant", "ACME\x07"], "ACME\\x07"),
        (["--tenant", "a" * 201], "a" * 60),
        (["--tenant", "acme", "--limit", "0"], "0"),
        (["--tenant", "acme", "--limit", "10001"], "10001"),
        (["--tenant", "acme", "--since", "2026-02-30"], "2026-02-30"),
        (["--tenant", "acme", "--since", "2026-03-01", "--until", "2026-02-01"], "2026-03-01"),
        (["--tenant", "acme", "--grain", "year"], "year"),
        (["--tenant", "acme", "--format", "xml"], "xml"),
        (["--tenant", "acme", "--all", "--format", "table"], "table"),
        (["--tenant", "acme", "--output", "/nonexistent/dir/out.csv"], "/nonexistent/dir"),
    ],
)
def test_bad_inputs_exit_2(db_url, acme, args, named):
    result = export(db_url, *args)
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert result.stdout == ""


def test_output_file_is_written_atomically(db_url, acme, tmp_path):
    target = tmp_path / "acme.json"
    target.write_text("old")
    result = export(db_url, "--tenant", "acme", "--format", "json", "--output", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_text(encoding="utf-8") == golden("history_week.json")
    assert sorted(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_failure_while_writing_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"

    def rows():
        yield ACME_ROWS[0]
        raise RuntimeError("connection lost")

    tenant = Tenant(uuid.uuid4(), "acme")
    with pytest.raises(RuntimeError):
        write_atomically(target, lambda out: write_json(tenant, rows(), out))
    assert list(tmp_path.iterdir()) == []
    target.write_text("previous\n")
    with pytest.raises(RuntimeError):
        write_atomically(target, lambda out: write_json(tenant, rows(), out))
    assert list(tmp_path.iterdir()) == [target] and target.read_text() == "previous\n"
    assert Tenant  # the writers take plain rows: no database needed here


def test_failure_mid_export_keeps_the_previous_file(engine, db_url, acme, tmp_path):
    """The 5th row cannot be written (an infinite value) after the first four were: the
    previous file stays as it was and no temporary file is left."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE kpi_history ALTER COLUMN hrp_pct TYPE numeric"))
        conn.execute(text("UPDATE kpi_history SET hrp_pct = 'Infinity' WHERE as_of = '2026-04-06'"))
    target = tmp_path / "out.csv"
    target.write_text("previous\n")
    result = run_process(
        ["history", "export", "--tenant", "acme", "--format", "json", "--output", str(target)],
        db_url,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(tmp_path.iterdir()) == [target] and target.read_text() == "previous\n"


@pytest.mark.slow
def test_streaming_a_million_rows_keeps_memory_flat(engine, db_url, tmp_path):
    # one row a day (a million weeks would pass Python's year 9999); as_of is just a date
    with engine.begin() as conn:
        tenant_id = f.tenant(conn, "big", "B")
        conn.execute(
            text(
                "INSERT INTO kpi_history (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, "
                "elasticity_usd_per_point, vli_integrity_pct, hrp_pct) "
                "SELECT :t, DATE '1000-01-01' + g, g % 100, 50.5, NULL, g % 100000, 99.99, "
                "1.25 FROM generate_series(0, 999999) AS g"
            ),
            {"t": tenant_id},
        )
    target = tmp_path / "big.csv"
    # A parent process that only runs the export, so RUSAGE_CHILDREN is the export's alone.
    measure = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ENV_KEYS}
    env["KPICTL_DATABASE_URL"] = db_url
    command = [sys.executable, "-m", "kpictl", "history", "export", "--tenant", "big", "--all"]
    finished = subprocess.run(
        [sys.executable, "-c", measure, *command, "--output", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, peak_kib = (int(value) for value in finished.stdout.split())
    assert code == 0, finished.stderr
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"
    print(f"export of 1,000,000 rows: peak RSS {peak_kib // 1024} MiB")
    with target.open("rb") as out:
        assert out.readline() == (",".join(COLUMNS) + "\n").encode()
        assert out.readline() == b"1000-01-01,0.00,50.50,,0.00,99.99,1.25\n"
    assert sum(1 for _ in target.open("rb")) == 1_000_001
