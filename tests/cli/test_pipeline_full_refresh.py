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


def test_full_refresh_rewrites_changed_runs_and_drops_snapshots_without_a_basis(db_url, engine):
    """Each chunk's runs' snapshots are deleted and written again: a changed source value is
    rewritten, a row another writer left (no job) is replaced by kpictl's, a token_usage row of
    a run whose agent runs are gone goes, and rows of runs outside the window stay."""
    now = db_now(engine)
    with engine.begin() as conn:
        repo = f.repository(conn)
        changed, emptied, foreign = (
            f.execution(conn, repo, "completed", now - timedelta(hours=3), now - timedelta(hours=2))
            for _ in range(3)
        )
        agent = f.agent_run(conn, changed, 100, 50, 150)
        f.agent_run(conn, emptied, 10, 5, 15)
        old = f.execution(conn, repo, "completed", f.at(10), f.at(11))  # 2026-01-05
    assert (
        run_cli(["backfill", "--since", "2026-01-05", "--until", "2026-01-06"], db_url).exit_code
        == 0
    )
    assert run_cli(["aggregate"], db_url).exit_code == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE agent_runs SET total_tokens = 400 WHERE id = :id"), {"id": agent})
        conn.execute(text("DELETE FROM agent_runs WHERE execution_id = :id"), {"id": emptied})
        conn.execute(  # as the AFU-9 platform's trigger writes them: no job, its own value
            text(
                "UPDATE kpi_snapshots SET job_id = NULL, value = 1 "
                "WHERE scope_id = :id AND kpi_name = 'run_duration'"
            ),
            {"id": foreign},
        )
        conn.execute(text("UPDATE kpi_snapshots SET value = 7 WHERE scope_id = :id"), {"id": old})

    result = run_cli(["aggregate", "--full-refresh"], db_url)
    assert result.exit_code == 0, result.output

    def value(run_id, kpi):
        return scalar(
            engine,
            "SELECT value FROM kpi_snapshots WHERE scope_id = :id AND kpi_name = :kpi",
            id=run_id,
            kpi=kpi,
        )

    assert value(changed, "token_usage") == 400
    assert value(emptied, "token_usage") is None and run_rows(engine, emptied) == 1
    assert value(foreign, "run_duration") == 3_600_000
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM kpi_snapshots WHERE level = 'run' AND job_id IS NULL",
        )
        == 0
    )
    assert value(old, "run_duration") == 7  # outside the 168 h window: untouched
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM kpi_snapshots k JOIN kpi_snapshots o USING "
            "(level, kpi_name, kpi_version, period_end, scope_id, period_start) WHERE k.id <> o.id",
        )
        == 0
    )


def test_full_refresh_drops_rows_without_a_basis_in_every_chunk_and_bucket(engine):
    """Backfill --full-refresh in chunks of two runs over two day buckets: the token_usage rows
    of the runs whose agent runs are gone go in each chunk, the first and the last run of a
    chunk included (the delete is bounded by the chunk's completed_at range), and the others
    stay."""
    from kpictl.services.jobs.stop import StopRequest
    from kpictl.services.pipeline import periods, steps
    from kpictl.services.pipeline import run as pipeline

    with engine.begin() as conn:
        repo = f.repository(conn)
        runs = [  # five runs a day, an hour apart, on 2026-01-05 and 2026-01-06
            f.execution(conn, repo, "completed", f.at(24 * day + hour), f.at(24 * day + hour + 1))
            for day in (0, 1)
            for hour in range(5)
        ]
        for run in runs:
            f.agent_run(conn, run, 10, 5, 15)
    buckets = periods.buckets(f.at(0), f.at(48), "day", periods.zone("UTC"), f.at(48))

    def backfill(**options) -> None:
        result = pipeline.backfill(
            engine,
            buckets,
            force=False,
            metadata={},
            options=steps.PipelineOptions(chunk_size=2, **options),
            stop=StopRequest(),
        )
        assert result.status == "completed" and not result.failed_buckets

    backfill()
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE kpi_name = 'token_usage'") == 10
    # chunks of a day: runs 0-1, 2-3, 4; emptied: the first and last of chunks, on both days
    emptied = [runs[i] for i in (0, 1, 4, 5, 8, 9)]
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM agent_runs WHERE execution_id = ANY(:ids)"), {"ids": emptied}
        )
    backfill(full_refresh=True)
    left = scalar(
        engine,
        "SELECT array_agg(scope_id ORDER BY period_end) FROM kpi_snapshots "
        "WHERE kpi_name = 'token_usage'",
    )
    assert left == [runs[i] for i in (2, 3, 6, 7)]
    assert (
        scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE kpi_name = 'run_duration'") == 10
    )
