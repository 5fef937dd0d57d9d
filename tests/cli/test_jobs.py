"""`kpictl jobs` and `kpictl jobs show ID`: ordering, filters, formats, bad inputs."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from kpictl.db.schema import kpi_aggregation_jobs
from tests import factories
from tests.conftest import run_cli

LIST_KEYS = [
    "id",
    "job_type",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "snapshots_created",
    "error",
]


@pytest.fixture
def jobs(engine):
    with engine.begin() as conn:
        at = factories.at
        ids = {
            "aggregate_old": factories.job(
                conn,
                "aggregate",
                "completed",
                at(1),
                completed_at=at(1) + timedelta(seconds=3.25),
                duration_ms=3250,
                snapshots_created=42,
                metadata={"host": "web-1", "pid": 4242, "steps": {"run": 12}},
            ),
            "backfill": factories.job(
                conn, "backfill", "failed", at(2), error="boom: division by zero"
            ),
            "aggregate_new": factories.job(conn, "aggregate", "running", at(3)),
            "retention": factories.job(
                conn, "retention", "completed", at(1.5), snapshots_created=0
            ),
        }
        for hour in (1, 2):
            factories.snapshot(conn, "mtti", 1, at(0), at(hour), job_id=ids["aggregate_old"])
    return ids


def listed(db_url, *args):
    result = run_cli(["jobs", *args, "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


def test_newest_first_json(jobs, db_url):
    data = listed(db_url)
    assert [row["id"] for row in data] == [
        str(jobs["aggregate_new"]),
        str(jobs["backfill"]),
        str(jobs["retention"]),
        str(jobs["aggregate_old"]),
    ]
    assert all(list(row) == LIST_KEYS for row in data)
    old = data[3]
    assert old == {
        "id": str(jobs["aggregate_old"]),
        "job_type": "aggregate",
        "status": "completed",
        "started_at": "2026-01-05T01:00:00+00:00",
        "completed_at": "2026-01-05T01:00:03.250000+00:00",
        "duration_ms": 3250,
        "snapshots_created": 42,
        "error": None,
    }
    assert data[0]["completed_at"] is None and data[1]["error"] == "boom: division by zero"


def test_filters_and_limit(jobs, db_url):
    assert [row["id"] for row in listed(db_url, "--status", "failed")] == [str(jobs["backfill"])]
    assert [row["id"] for row in listed(db_url, "--type", "aggregate")] == [
        str(jobs["aggregate_new"]),
        str(jobs["aggregate_old"]),
    ]
    assert [
        row["id"] for row in listed(db_url, "--type", "aggregate", "--status", "completed")
    ] == [str(jobs["aggregate_old"])]
    assert [row["id"] for row in listed(db_url, "--limit", "2")] == [
        str(jobs["aggregate_new"]),
        str(jobs["backfill"]),
    ]
    assert listed(db_url, "--type", "history_fill") == []


def test_table_and_csv(jobs, db_url):
    table = run_cli(["jobs"], db_url)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == LIST_KEYS
    assert lines[2].split()[:3] == [str(jobs["aggregate_new"]), "aggregate", "running"]
    assert len(lines) == 6
    rows = list(csv.DictReader(io.StringIO(run_cli(["jobs", "--format", "csv"], db_url).stdout)))
    assert list(rows[0]) == LIST_KEYS
    assert rows[3]["duration_ms"] == "3250" and rows[3]["error"] == ""


def test_started_at_null_orders_by_creation(engine, db_url):
    with engine.begin() as conn:
        started = factories.job(conn, "aggregate", "completed", factories.at(5))
        pending = factories.job(conn, "backfill", "pending", None, created_at=factories.at(6))
    assert [row["id"] for row in listed(db_url)] == [str(pending), str(started)]


def test_show_text_with_metadata(jobs, db_url):
    result = run_cli(["jobs", "show", str(jobs["aggregate_old"])], db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id:", str(jobs["aggregate_old"])]
    assert "job_type:           aggregate" in lines
    assert "duration_ms:        3250" in lines
    assert 'snapshots_by_level: {"factory": 2}' in lines
    assert "metadata:" in lines
    assert '    "host": "web-1",' in lines


def test_show_json(jobs, db_url):
    result = run_cli(["jobs", "show", str(jobs["aggregate_old"]), "--format", "json"], db_url)
    assert result.exit_code == 0
    document = json.loads(result.stdout)["data"]
    assert document["metadata"] == {"host": "web-1", "pid": 4242, "steps": {"run": 12}}
    assert document["started_at"] == "2026-01-05T01:00:00+00:00"
    assert document["created_at"] == "2026-01-05T01:00:00+00:00"
    assert document["snapshots_by_level"] == {"factory": 2}
    assert {"kpi_names", "period_start", "period_end", "error"} <= set(document)


def test_common_options_on_both(jobs, db_url):
    listing = run_cli(["jobs", "--database-url", db_url, "-q", "--format", "json"])
    assert listing.exit_code == 0, listing.output
    assert len(json.loads(listing.stdout)["data"]) == 4
    shown = run_cli(
        ["jobs", "show", str(jobs["backfill"]), "--database-url", db_url, "--log-format", "json"]
    )
    assert shown.exit_code == 0, shown.output
    assert "boom: division by zero" in shown.stdout


def test_empty_table(db_url):
    result = run_cli(["jobs", "--format", "json"], db_url)
    assert result.exit_code == 0 and json.loads(result.stdout) == {"status": "success", "data": []}


def test_unknown_job_exit_1(jobs, db_url):
    missing = "00000000-0000-4000-8000-000000000000"
    result = run_cli(["jobs", "show", missing], db_url)
    assert result.exit_code == 1
    assert f"no such job: {missing}" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["show", "not-a-uuid"], "'not-a-uuid'"),
        (["--status", "done"], "'done'"),
        (["--limit", "0"], "--limit 0"),
        (["--limit", "1001"], "--limit 1001"),
        (["--limit", "ten"], "'ten'"),
        (["--type", ""], "'' is not one of 'aggregate', 'backfill', 'retention', 'history_fill'"),
        (["--type", "bogus"], "'bogus' is not one of"),
        (["show", "59379dd5g"], "'59379dd5g'"),
        (["show", ""], "invalid job ID ''"),
        (["--format", "xml"], "'xml'"),
    ],
)
def test_bad_inputs_exit_2(jobs, db_url, engine, args, named):
    result = run_cli(["jobs", *args], db_url)
    assert result.exit_code == 2, result.output
    assert named in result.stderr and result.stdout == ""
    assert "Traceback" not in result.output
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(kpi_aggregation_jobs)).scalar()
    assert count == 4


def test_rerun_is_read_only(jobs, db_url):
    assert listed(db_url) == listed(db_url)


def test_show_takes_a_unique_prefix_and_lists_an_ambiguous_one(db_url, engine):
    with engine.begin() as conn:
        first = factories.job(
            conn,
            "aggregate",
            "completed",
            factories.at(1),
            id="59379dd5-0000-4000-8000-000000000001",
        )
        second = factories.job(
            conn, "backfill", "failed", factories.at(2), id="59379dd5-1111-4000-8000-000000000002"
        )
    for prefix in ("59379dd5-0", "59379DD5-0000", str(first)):
        shown = run_cli(["jobs", "show", prefix, "--format", "json"], db_url)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["data"]["id"] == str(first)
    ambiguous = run_cli(["jobs", "show", "59379dd5"], db_url)
    assert ambiguous.exit_code == 2 and ambiguous.stdout == ""
    assert (
        f"kpictl: error: job ID '59379dd5' is ambiguous: {second}, {first}; give more of it"
        in ambiguous.stderr
    )
    with engine.begin() as conn:
        third = factories.job(
            conn,
            "retention",
            "completed",
            factories.at(3),
            id="a1b2c3d4-2222-4000-8000-000000000003",
        )
    eight = run_cli(["jobs", "show", str(third)[:8], "--format", "json"], db_url)  # `a1b2c3d4`
    assert eight.exit_code == 0 and json.loads(eight.stdout)["data"]["id"] == str(third)
    missing = run_cli(["jobs", "show", "59379dd6"], db_url)
    assert missing.exit_code == 1 and "no such job: 59379dd6" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "--status", "done"],
        ["jobs", "--type", "bogus"],
        ["jobs", "show", "not-an-id"],
        ["backfill", "--since", "2026-01-05", "--bucket", "month"],
        ["kpis", "--level", "run"],
        ["freshness", "--level", "global"],
    ],
)
def test_bad_choices_are_refused_before_any_connection(args):
    result = run_cli(args, "postgresql://kpictl@127.0.0.1:1/kpictl")  # nothing listens there
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("kpictl: error: ")


def test_the_choices_are_the_schemas_and_the_job_runners():
    from kpictl.cli.options import JobStatus, JobType
    from kpictl.db.schema import JOB_STATUSES

    assert tuple(status.value for status in JobStatus) == JOB_STATUSES
    from kpictl.services.jobs.lock import HISTORY_FILL, PIPELINE, RETENTION

    written = {kind for lock in (PIPELINE, RETENTION, HISTORY_FILL) for kind in lock.job_types}
    written.add("adopt")  # the adoption's row (services/adoption/finish.py)
    assert written == {job_type.value for job_type in JobType}
