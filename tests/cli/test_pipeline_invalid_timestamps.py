"""No source row can stop the pipeline: infinite timestamps make a run invalid (issue 12, item 2).

On PostgreSQL 15 `'infinity' - timestamp` is an error ("cannot subtract infinite timestamps"),
on 17+ it is an infinite interval; both must behave the same: the run is left out of every KPI,
counted in `invalid_runs`, and no snapshot value is ever infinite or NaN (a CHECK makes sure).
The suite runs on both servers in CI (`.ci/run`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import libpq, run_cli


@pytest.fixture
def sources(engine):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with engine.begin() as conn:
        repo = f.repository(conn)
        valid = f.execution(
            conn, repo, "completed", now - timedelta(hours=2), now - timedelta(minutes=90)
        )
        hour = (now - timedelta(hours=1)).isoformat()
        three_hours = (now - timedelta(hours=3)).isoformat()
        f.execution_literal(
            conn, repo, "completed", "-infinity", hour
        )  # in the period by completed_at
        f.execution_literal(conn, repo, "failed", three_hours, "infinity")  # placed by started_at
        f.execution_literal(conn, repo, "failed", three_hours, "-infinity")
        f.execution_literal(
            conn, repo, "completed", "infinity", hour
        )  # completed before it started
    return now, valid


def _no_infinite_values(engine) -> None:
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT count(*) FROM kpi_snapshots "
                    "WHERE value IN ('Infinity', '-Infinity', 'NaN') "
                    "OR NOT isfinite(period_start) OR NOT isfinite(period_end)"
                )
            ).scalar_one()
            == 0
        )


def test_aggregate_counts_infinite_timestamps_as_invalid(db_url, engine, sources):
    _, valid = sources
    result = run_cli(["aggregate", "--period-hours", "24"], db_url)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        job = conn.execute(
            text("SELECT status, metadata FROM kpi_aggregation_jobs WHERE job_type = 'aggregate'")
        ).one()
        run_rows = conn.execute(
            text("SELECT scope_id, value FROM kpi_snapshots WHERE kpi_name = 'run_duration'")
        ).all()
        factory = dict(
            conn.execute(
                text("SELECT kpi_name, value FROM kpi_snapshots WHERE level = 'factory'")
            ).all()
        )
        view = conn.execute(text("SELECT terminal_runs, mtti_ms FROM mv_factory_kpis_24h")).one()
    assert job.status == "completed"
    assert job.metadata["invalid_runs"] == 4
    assert [tuple(row) for row in run_rows] == [(valid, Decimal(1_800_000))]
    assert factory["mtti"] == Decimal(1_800_000) and factory["success_rate"] == Decimal(100)
    assert tuple(view) == (1, Decimal(1_800_000))
    _no_infinite_values(engine)
    # again, incrementally: still nothing stops the cycle
    assert run_cli(["aggregate", "--period-hours", "24"], db_url).exit_code == 0


def test_backfill_and_dry_run_count_them_too(db_url, engine, sources):
    now, _ = sources
    day = now.date()
    dry = run_cli(["aggregate", "--period-hours", "24", "--dry-run", "--format", "json"], db_url)
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)["data"]
    assert plan["invalid_runs"] == 4
    since = (day - timedelta(days=1)).isoformat()
    result = run_cli(["backfill", "--since", since, "--until", day.isoformat()], db_url)
    assert result.exit_code == 0, result.output
    _no_infinite_values(engine)


def test_no_snapshot_value_can_be_infinite_or_nan(db_url):
    with psycopg.connect(libpq(db_url)) as conn:
        for value in ("Infinity", "-Infinity", "NaN"):
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "INSERT INTO kpi_snapshots (kpi_name, level, value, period_start, period_end) "
                    "VALUES ('mtti', 'factory', %s::numeric, now(), now())",
                    (value,),
                )
            conn.rollback()
