"""`kpictl backfill --jobs N`: buckets computed on N connections at once, under the one pipeline
lock; the same keys and values as one connection; a failing bucket reported while the others
complete; SIGTERM stops every worker (143, the job cancelled)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.cli.test_pipeline import refuse_snapshots
from tests.conftest import run_cli
from tests.helpers import AT_GATE, scalar, spawn, step_gate, wait_for

SINCE = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 6
ARGS = ["backfill", "--since", "2026-01-05", "--until", "2026-01-11", "--format", "json"]
VALUES = (
    "SELECT level, kpi_name, kpi_version, scope_id, period_start, period_end, value, unit "
    "FROM kpi_snapshots ORDER BY 1, 2, 3, 4, 5, 6"
)


@pytest.fixture
def runs(engine):
    """Runs of three products on each of six days, with tokens, tool calls and verdicts."""
    with engine.begin() as conn:
        repos = [f.repository(conn, "acme", name) for name in ("a", "b", "c")]
        for day in range(DAYS):
            for index, repo in enumerate(repos):
                for hour in range(1, 4 + index):
                    start = SINCE + timedelta(days=day, hours=hour)
                    status = "failed" if (day + hour) % 4 == 0 else "completed"
                    run = f.execution(
                        conn, repo, status, start, start + timedelta(minutes=17 * hour)
                    )
                    f.agent_run(conn, run, 100 * hour, 10 * day, None)
                    f.tool_call(conn, run, error="timeout" if hour == 2 else None)
                    f.verdict(
                        conn,
                        run,
                        "accepted" if hour % 2 else "overridden",
                        start + timedelta(hours=1),
                    )


def values(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text(VALUES)).all()


def test_two_jobs_give_the_keys_and_values_of_one(db_url, engine, runs):
    one = run_cli([*ARGS, "--jobs", "1"], db_url)
    assert one.exit_code == 0, one.output
    expected = values(engine)
    assert len(expected) > 6 * 4
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kpi_snapshots"))
    two = run_cli([*ARGS, "--jobs", "2"], db_url)
    assert two.exit_code == 0, two.output
    assert values(engine) == expected
    document = json.loads(two.stdout)["data"]
    assert [period["period_start"][:10] for period in document["periods"]] == [
        (SINCE + timedelta(days=day)).date().isoformat() for day in range(DAYS)
    ]  # reported in bucket order, whichever worker finished first
    job = scalar(
        engine, "SELECT metadata FROM kpi_aggregation_jobs ORDER BY started_at DESC LIMIT 1"
    )
    assert job["jobs"] == 2
    again = run_cli([*ARGS, "--jobs", "auto"], db_url)  # all computed: skipped
    assert json.loads(again.stdout)["data"]["skipped_buckets"] == DAYS
    assert values(engine) == expected


def test_a_failing_bucket_is_reported_while_the_others_complete(db_url, engine, runs):
    refuse_snapshots(engine, "factory", SINCE + timedelta(days=2))
    result = run_cli([*ARGS, "--jobs", "2"], db_url)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)["data"]
    assert [bucket["period_start"][:10] for bucket in document["failed_buckets"]] == ["2026-01-07"]
    days = scalar(
        engine,
        "SELECT count(DISTINCT period_start) FROM kpi_snapshots WHERE level = 'factory'",
    )
    assert days == DAYS - 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--jobs: 0 is not in 1-16"),
        ("17", "--jobs: 17 is not in 1-16"),
        ("many", "'many' is not a whole number"),
    ],
)
def test_bad_jobs_values_are_usage_errors(db_url, engine, value, message):
    result = run_cli([*ARGS, "--jobs", value], db_url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs") == 0


def test_sigterm_stops_every_worker(db_url, engine, runs):
    """Both workers wait inside their bucket's run level; SIGTERM, then the grace of one
    second, cancels both statements: exit 143, the job cancelled, no bucket committed."""
    with step_gate(engine):
        process = spawn(
            [*ARGS, "--jobs", "2"],
            db_url,
            KPICTL_DEBUG_STEP_GATE="run",
            KPICTL_STOP_GRACE_SECONDS="1",
        )
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 2)  # two buckets at once
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 143, err
    assert "Traceback" not in err
    with engine.connect() as conn:
        job = conn.execute(text("SELECT status, error FROM kpi_aggregation_jobs")).one()
    assert job.status == "cancelled"
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level <> 'run'") == 0


def test_aggregate_from_scratch_with_two_jobs_gives_the_values_of_one(db_url, engine):
    """The run level of a full-scan cycle in two time slices at once; the cycles after it are
    incremental, on one connection."""
    now = scalar(engine, "SELECT now()")
    with engine.begin() as conn:
        repo = f.repository(conn)
        for minutes in range(10, 1400, 37):
            end = now - timedelta(minutes=minutes)
            run = f.execution(conn, repo, "completed", end - timedelta(minutes=5), end)
            f.agent_run(conn, run, minutes, 1, None)
    one = run_cli(["aggregate", "--jobs", "1"], db_url)
    assert one.exit_code == 0, one.output
    expected = values(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kpi_snapshots"))
        conn.execute(text("DELETE FROM kpi_aggregation_jobs"))
    two = run_cli(["aggregate", "--jobs", "2", "--format", "json"], db_url)
    assert two.exit_code == 0, two.output
    assert values(engine) == expected
    job = scalar(engine, "SELECT metadata FROM kpi_aggregation_jobs")
    assert job["jobs"] == 2 and job["run_scan"]["full"] is True
    assert json.loads(two.stdout)["data"]["periods"][0]["runs"] == len(range(10, 1400, 37))


def test_a_run_partition_locked_by_another_analyze_does_not_stop_the_cycle(db_url, engine):
    """After its first full chunk the run level ANALYZEs the partitions it writes; one that
    another session is analyzing (the other slice's worker writing the same day, autovacuum)
    holds the lock ANALYZE needs. The cycle skips it instead of waiting into lock_timeout
    (found at 5M runs: `aggregate --jobs 2` from scratch failed there)."""
    from kpictl.db import partitions
    from kpictl.db.engine import make_engine
    from kpictl.services.jobs.stop import StopRequest
    from kpictl.services.pipeline import run as pipeline
    from kpictl.services.pipeline import steps
    from kpictl.services.pipeline.periods import Period
    from tests.conftest import test_settings

    now = scalar(engine, "SELECT now()")
    with engine.begin() as conn:
        repo = f.repository(conn)
        for minutes in range(1, 11):
            end = now - timedelta(minutes=minutes)
            f.execution(conn, repo, "completed", end - timedelta(minutes=5), end)
        partitions.ensure(conn, "run", now - timedelta(days=1), now)
    day = [partitions.containing("run", now - timedelta(minutes=m)).name for m in (1, 10)]
    quick = make_engine(db_url, test_settings(db_url, lock_timeout_ms=500))
    holder = engine.connect()
    try:
        with holder.begin():  # the lock ANALYZE takes, held as a concurrent ANALYZE holds it
            holder.execute(text(f"LOCK TABLE {', '.join(set(day))} IN SHARE UPDATE EXCLUSIVE MODE"))
            for jobs in (2, 1):  # from scratch each time: in time slices, then on one
                with engine.begin() as conn:
                    conn.execute(text("DELETE FROM kpi_snapshots"))
                    conn.execute(text("DELETE FROM kpi_aggregation_jobs"))
                result = pipeline.aggregate(
                    quick,
                    Period(now - timedelta(hours=1), now),
                    metadata={},
                    options=steps.PipelineOptions(chunk_size=3, jobs=jobs),  # full chunks
                    stop=StopRequest(),
                )
                assert result.status == "completed"
                assert result.periods[0].runs == 10
                assert (
                    scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 10
                )
    finally:
        holder.close()
        quick.dispose()
