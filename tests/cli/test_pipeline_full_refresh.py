"""`aggregate --full-refresh` and `backfill --full-refresh`: every key of the window recomputed,
whatever earlier cycles computed (the incremental scan, the kept hours); the job row says so.

The damage an operator repairs with it: run snapshots deleted by hand (an incremental cycle
only looks at the runs since the previous one) and a run's status fixed in the sources (the
kept hour's counts do not change, so an incremental cycle does not see it)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from tests import factories as f
from tests.conftest import run_cli
from tests.helpers import db_now, scalar


def run_rows(engine, run_id) -> int:
    return scalar(
        engine,
        "SELECT count(*) FROM kpi_snapshots WHERE level = 'run' AND scope_id = :id",
        id=run_id,
    )


def success_rate(engine):
    return scalar(
        engine,
        "SELECT value FROM kpi_snapshots WHERE level = 'product' "
        "AND kpi_name = 'product_success_rate' ORDER BY period_end DESC, calculated_at DESC LIMIT 1",
    )


def last_job(engine):
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT job_type, status, metadata FROM kpi_aggregation_jobs "
                "ORDER BY started_at DESC LIMIT 1"
            )
        ).one()


def test_aggregate_full_refresh_repairs_what_an_incremental_cycle_cannot_see(db_url, engine):
    now = db_now(engine)
    with engine.begin() as conn:
        repo = f.repository(conn)
        done = [
            f.execution(conn, repo, "completed", now - timedelta(hours=4), now - timedelta(hours=3))
            for _ in range(3)
        ]
        failed = f.execution(
            conn, repo, "failed", now - timedelta(hours=4), now - timedelta(hours=3)
        )
        f.agent_run(conn, done[0], 100, 50, 150)
        f.tool_call(conn, done[0])
    assert run_cli(["aggregate"], db_url).exit_code == 0
    assert success_rate(engine) == 75  # 3 of 4
    rows_of_a_run = run_rows(engine, done[0])
    assert rows_of_a_run == 3  # run_duration, token_usage, tool_call_success_rate
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kpi_snapshots WHERE scope_id = :id"), {"id": done[0]})
        conn.execute(
            text("UPDATE workflow_executions SET status = 'completed' WHERE id = :id"),
            {"id": failed},
        )

    assert run_cli(["aggregate"], db_url).exit_code == 0  # incremental: sees neither
    assert run_rows(engine, done[0]) == 0
    assert success_rate(engine) == 75
    assert "full_refresh" not in last_job(engine).metadata

    result = run_cli(["aggregate", "--full-refresh"], db_url)
    assert result.exit_code == 0, result.output
    assert run_rows(engine, done[0]) == rows_of_a_run  # restored in the same cycle
    assert success_rate(engine) == 100  # 4 of 4
    job = last_job(engine)
    assert (job.job_type, job.status) == ("aggregate", "completed")
    assert job.metadata["full_refresh"] is True
    assert job.metadata["run_scan"]["full"] is True
    assert job.metadata["parts_scan"]["full"] is True

    # and the next ordinary cycle goes on incrementally from the refreshed state
    assert run_cli(["aggregate"], db_url).exit_code == 0
    assert last_job(engine).metadata["run_scan"]["full"] is False
    assert success_rate(engine) == 100


def test_backfill_full_refresh_recomputes_buckets_already_computed(db_url, engine):
    with engine.begin() as conn:
        repo = f.repository(conn)
        run = f.execution(conn, repo, "completed", f.at(10), f.at(11))  # on 2026-01-05
        f.agent_run(conn, run, 100, 50, 150)
        f.tool_call(conn, run, error="timeout")
    args = ["backfill", "--since", "2026-01-05", "--until", "2026-01-06"]
    assert run_cli(args, db_url).exit_code == 0
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kpi_snapshots WHERE scope_id = :id"), {"id": run})
    assert run_cli(args, db_url).exit_code == 0  # the bucket is computed: skipped
    assert run_rows(engine, run) == 0
    result = run_cli([*args, "--full-refresh"], db_url)
    assert result.exit_code == 0, result.output
    assert run_rows(engine, run) == 3
    job = last_job(engine)
    assert job.job_type == "backfill" and job.metadata["full_refresh"] is True
    duration = scalar(
        engine,
        "SELECT value FROM kpi_snapshots WHERE scope_id = :id AND kpi_name = 'run_duration'",
        id=run,
    )
    assert duration == 3_600_000  # one hour, in ms


def test_full_refresh_twice_changes_nothing(db_url, engine):
    now = db_now(engine)
    with engine.begin() as conn:
        repo = f.repository(conn)
        for minutes in (30, 90, 150):
            f.execution(
                conn,
                repo,
                "completed",
                now - timedelta(minutes=minutes + 20),
                now - timedelta(minutes=minutes),
            )
    assert run_cli(["aggregate", "--full-refresh"], db_url).exit_code == 0
    query = (
        "SELECT level, kpi_name, scope_id, period_start, period_end, value FROM kpi_snapshots "
        "ORDER BY 1, 2, 3, 4, 5"
    )
    with engine.connect() as conn:
        before = conn.execute(text(query)).all()
    assert run_cli(["aggregate", "--full-refresh"], db_url).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(text(query)).all() == before
