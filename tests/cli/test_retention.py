"""`kpictl retention`: what it deletes and reports, a rerun, the dry run, bad input, one run at a
time. The service's rules (age boundaries, batches, the job row): tests/services/maintenance/."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from kpictl.services.maintenance import retention as service
from tests import factories
from tests.conftest import run_cli
from tests.helpers import db_now, jobs_of_type, snapshot_counts


def test_cli_deletes_reports_and_reruns_idempotently(db_url, engine):
    now = db_now(engine)
    with engine.begin() as conn:
        factories.snapshot_at(conn, "run", now - timedelta(days=89))
        factories.snapshot_at(conn, "run", now - timedelta(days=91))
        factories.snapshot_at(conn, "run", now - timedelta(days=95))
        factories.snapshot_at(conn, "product", now - timedelta(days=91))
        factories.snapshot_at(conn, "factory", now - timedelta(days=91))
        factories.job(conn, "aggregate", "completed", now - timedelta(days=91))
    result = run_cli(["retention", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["data"]
    assert [(row["target"], row["older_than_days"], row["deleted"]) for row in document] == [
        ("run", 90, 2),
        ("product", 90, 1),
        ("factory", 730, 0),
        ("jobs", 90, 1),
    ]
    assert "Retention deleted: run 2, product 1, factory 0, jobs 1" in result.stderr
    again = run_cli(["retention", "--format", "json"], db_url)
    assert again.exit_code == 0, again.output
    assert [row["deleted"] for row in json.loads(again.stdout)["data"]] == [0, 0, 0, 0]
    assert snapshot_counts(engine) == {"run": 1, "factory": 1}
    retention_jobs = jobs_of_type(engine, "retention")
    assert len(retention_jobs) == 2
    assert all(job["status"] == "completed" for job in retention_jobs)


def test_cli_dry_run_table(db_url, engine):
    now = db_now(engine)
    with engine.begin() as conn:
        factories.snapshot_at(conn, "run", now - timedelta(days=91))
    result = run_cli(["retention", "--dry-run", "--format", "csv"], db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "target,table,older_than_days,cutoff,would_delete,would_drop_partitions,"
        "partition_rows_estimated"
    )
    assert [line.split(",")[0::4] for line in lines[1:]] == [
        ["run", "1"],
        ["product", "0"],
        ["factory", "0"],
        ["jobs", "0"],
    ]
    assert snapshot_counts(engine) == {"run": 1}
    assert jobs_of_type(engine, "retention") == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--run-days", "0"], "--run-days: 0"),
        (["--product-days", "-1"], "--product-days: -1"),
        (["--factory-days", "abc"], "--factory-days: 'abc'"),
        (["--jobs-days", "1.5"], "--jobs-days: '1.5'"),
        (["--batch-size", "0"], "--batch-size: 0"),
        (["--batch-size", "1000001"], "--batch-size: 1000001"),
    ],
)
def test_bad_values_are_usage_errors(db_url, engine, args, named):
    with engine.begin() as conn:
        factories.snapshot_at(conn, "run", db_now(engine) - timedelta(days=1000))
    result = run_cli(["retention", *args], db_url)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert "Traceback" not in result.output
    assert snapshot_counts(engine) == {"run": 1}
    assert jobs_of_type(engine, "retention") == []


def test_one_retention_at_a_time(db_url, engine):
    with engine.begin() as conn:
        factories.snapshot_at(conn, "run", db_now(engine) - timedelta(days=100))
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": service.RETENTION_LOCK_KEY})
        result = run_cli(["retention"], db_url)
        assert result.exit_code == 75, result.output
        assert "another retention run holds the lock" in result.stderr
        assert snapshot_counts(engine) == {"run": 1}
        assert jobs_of_type(engine, "retention") == []
        # a dry run only reads: it does not need the lock
        assert run_cli(["retention", "--dry-run"], db_url).exit_code == 0
        holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": service.RETENTION_LOCK_KEY})
        holder.commit()
    assert run_cli(["retention"], db_url).exit_code == 0
    assert snapshot_counts(engine) == {}
