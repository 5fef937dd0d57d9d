"""One pipeline at a time, signals and crashes, with real processes."""

from __future__ import annotations

import signal
import socket
import time

import psycopg
import pytest

from kpictl.services.jobs.lock import PIPELINE_LOCK_KEY
from tests import factories as f
from tests.conftest import libpq, run_cli
from tests.helpers import AT_GATE, SLEEPING, scalar, spawn, step_gate, wait_for


def lock_sessions(engine) -> int:
    """The pipeline lock sessions of this database: a run holding or polling for the lock."""
    return scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'kpictl pipeline lock %'",
    )


def lock_waiters(engine) -> int:
    """The backends of this database waiting for a heavyweight lock (a table lock, say)."""
    return scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'",
    )


def job_status(engine) -> str | None:
    return scalar(
        engine, "SELECT status FROM kpi_aggregation_jobs ORDER BY started_at DESC LIMIT 1"
    )


def test_lock_held_exits_75_naming_the_holder_and_wait_proceeds(db_url, engine):
    holder = psycopg.connect(libpq(db_url), autocommit=True)
    holder.execute("SELECT set_config('application_name', 'test holder', false)")
    holder.execute("SELECT pg_advisory_lock(%s)", (PIPELINE_LOCK_KEY,))
    try:
        blocked = run_cli(["aggregate"], db_url)
        assert blocked.exit_code == 75, blocked.output
        first_line = blocked.stderr.splitlines()[0]
        assert first_line.startswith(
            "kpictl: another pipeline run holds the lock: 'test holder' (no job row yet, "
        )
        assert first_line.endswith(f", backend pid {holder.info.backend_pid})")
        assert scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs") == 0

        waiting = spawn(["aggregate", "--wait", "20"], db_url)
        wait_for(lambda: lock_sessions(engine) == 1, what="the waiting run's lock session")
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        holder.close()
    _stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stderr
    assert job_status(engine) == "completed"

    timed_out = psycopg.connect(libpq(db_url), autocommit=True)
    timed_out.execute("SELECT pg_advisory_lock(%s)", (PIPELINE_LOCK_KEY,))
    try:
        result = run_cli(["aggregate", "--wait", "1"], db_url)
        assert result.exit_code == 75 and "after waiting 1s" in result.stderr
    finally:
        timed_out.close()


def test_second_run_names_a_running_kpictl(db_url, engine):
    with engine.begin() as conn:
        f.completed_runs(conn)
    with step_gate(engine) as open_gate:
        first = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_GATE="product")
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 1)
            job_id = scalar(engine, "SELECT id FROM kpi_aggregation_jobs WHERE status = 'running'")
            second = run_cli(["aggregate"], db_url)
            assert second.exit_code == 75
            assert f"host {socket.gethostname()} pid {first.pid}" in second.stderr
            assert str(job_id) in second.stderr
        finally:
            open_gate()
            first.communicate(timeout=60)
    assert first.returncode == 0


def test_four_processes_at_once_never_duplicate(db_url, engine):
    with engine.begin() as conn:
        f.completed_runs(conn, 5)
    processes = [spawn(["aggregate", "--wait", "60"], db_url) for _ in range(4)]
    for process in processes:
        _stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert (
        scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs WHERE status = 'completed'") == 4
    )
    duplicates = scalar(
        engine,
        "SELECT count(*) FROM (SELECT 1 FROM kpi_snapshots GROUP BY level, kpi_name, kpi_version, "
        "scope_id, period_start, period_end HAVING count(*) > 1) d",
    )
    assert duplicates == 0
    # 5 run_duration rows, 3 product KPIs and 4 factory KPIs per distinct period (the four runs
    # may or may not share a 5-minute slot)
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 5
    periods = scalar(
        engine,
        "SELECT count(DISTINCT (period_start, period_end)) FROM kpi_snapshots "
        "WHERE level = 'factory'",
    )
    assert 1 <= periods <= 4
    levels = (
        "SELECT count(*) FILTER (WHERE level = 'product') || ',' || "
        "count(*) FILTER (WHERE level = 'factory') FROM kpi_snapshots"
    )
    assert scalar(engine, levels) == f"{3 * periods},{4 * periods}"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_slow_step_cancels_it(db_url, engine, sig, code):
    """The product step outlives the grace period: its query is cancelled server-side."""
    with engine.begin() as conn:
        f.completed_runs(conn)
    process = spawn(
        ["aggregate"], db_url, KPICTL_DEBUG_STEP_SLEEP="product:60", KPICTL_STOP_GRACE_SECONDS="1"
    )
    wait_for(lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 3)
    wait_for(lambda: scalar(engine, SLEEPING) == 1, what="inside the product step's pg_sleep")
    started = time.monotonic()
    process.send_signal(sig)
    _stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    assert time.monotonic() - started < 20
    assert "Traceback" not in stderr
    row = scalar(engine, "SELECT status || ':' || coalesce(error, '') FROM kpi_aggregation_jobs")
    assert row.startswith("cancelled:cancelled by SIG")
    # the committed run level is intact; nothing of the cancelled step or after it
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 3
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level <> 'run'") == 0
    # the slow query was cancelled server-side: no backend of this database still sleeps
    wait_for(lambda: scalar(engine, SLEEPING) == 0, timeout=10)


def test_sigterm_lets_the_current_step_finish(db_url, engine):
    """Within the grace period the running step completes and commits; no new step starts."""
    with engine.begin() as conn:
        f.completed_runs(conn)
    process = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_SLEEP="product:3")
    wait_for(lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 3)
    wait_for(lambda: scalar(engine, SLEEPING) == 1, what="inside the product step's pg_sleep")
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert job_status(engine) == "cancelled"
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'product'") == 3
    assert scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'factory'") == 0


def test_sigkill_leaves_running_job_that_next_run_abandons(db_url, engine):
    with engine.begin() as conn:
        f.completed_runs(conn)
    process = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_SLEEP="factory:60")
    wait_for(
        lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'product'") == 3
    )
    process.kill()
    process.communicate(timeout=30)
    assert job_status(engine) == "running"
    # The killed client's backend may still sit in pg_sleep, holding the lock; wait for it.
    result = run_cli(["aggregate", "--wait", "90"], db_url)
    assert result.exit_code == 0, result.output
    statuses = [
        row
        for row in (
            scalar(
                engine,
                "SELECT string_agg(status, ',' ORDER BY started_at) FROM kpi_aggregation_jobs",
            )
            or ""
        ).split(",")
    ]
    assert statuses == ["abandoned", "completed"]
    assert "abandoned" in result.stderr


def test_a_stop_while_waiting_for_the_lock_exits_143(db_url, engine):
    holder = psycopg.connect(libpq(db_url), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (PIPELINE_LOCK_KEY,))
    try:
        waiting = spawn(["aggregate", "--wait"], db_url)
        # polling for the lock (its signal handlers are installed by then)
        wait_for(lambda: lock_sessions(engine) == 1, what="the waiting run's lock session")
        waiting.send_signal(signal.SIGTERM)
        _stdout, stderr = waiting.communicate(timeout=30)
    finally:
        holder.close()
    assert waiting.returncode == 143, stderr
    assert scalar(engine, "SELECT count(*) FROM kpi_aggregation_jobs") == 0


def test_a_stop_during_the_last_step_completes_the_job_and_exits_143(db_url, engine):
    with engine.begin() as conn:
        f.completed_runs(conn)
    process = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_SLEEP="views:3")
    wait_for(
        lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'factory'") == 4
    )
    wait_for(lambda: scalar(engine, SLEEPING) == 1, what="inside the views step's pg_sleep")
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert job_status(engine) == "completed"


def test_sigterm_during_history_fill_ends_its_job(db_url, engine):
    with engine.begin() as conn:
        f.reporting_tenants(conn)
    blocker = psycopg.connect(libpq(db_url))
    blocker.execute("LOCK TABLE kpi_history IN ACCESS EXCLUSIVE MODE")
    try:
        process = spawn(["history", "fill"], db_url, KPICTL_LOCK_TIMEOUT="60s")
        wait_for(lambda: job_status(engine) == "running")
        # one chunk per tenant (3 tenants, concurrency 4), each blocked writing kpi_history
        wait_for(lambda: lock_waiters(engine) == 3, what="three chunks waiting for the table")
        process.send_signal(signal.SIGTERM)
        # no wait for the handler: the signal is pending from here on, and the process handles
        # it before it runs another line of Python, so before any chunk returns
    finally:
        blocker.rollback()  # the running chunk proceeds and commits; no new one starts
        blocker.close()
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    # every chunk had started before the stop: each commits, none is left, the job completed
    assert job_status(engine) == "completed"
    assert scalar(engine, "SELECT count(*) FROM kpi_history") == 3


def test_a_killed_history_fill_is_abandoned_by_the_next(db_url, engine):
    with engine.begin() as conn:
        f.reporting_tenants(conn)
    blocker = psycopg.connect(libpq(db_url))
    blocker.execute("LOCK TABLE kpi_history IN ACCESS EXCLUSIVE MODE")
    try:
        process = spawn(["history", "fill"], db_url, KPICTL_LOCK_TIMEOUT="60s")
        wait_for(lambda: job_status(engine) == "running")
        process.kill()
        process.communicate(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    wait_for(
        lambda: (
            scalar(
                engine,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            == 0
        )
    )
    result = run_cli(["history", "fill"], db_url)
    assert result.exit_code == 0, result.output
    statuses = scalar(
        engine,
        "SELECT string_agg(status, ',' ORDER BY started_at) FROM kpi_aggregation_jobs "
        "WHERE job_type = 'history_fill'",
    )
    assert statuses == "abandoned,completed"
