"""Locks you can trust, outages reported as outages, stops within the grace period (issue 12):
real processes against real server faults (idle-session timeouts, killed lock sessions, a
restarted server, SIGTERM). The lock guard and the fence on their own, without a process:
tests/services/jobs/test_lock.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from kpictl.db.engine import make_engine
from kpictl.services.jobs import lock as locks
from tests import factories as f
from tests.conftest import PgServer, test_settings
from tests.helpers import AT_GATE, SLEEPING, scalar, spawn, step_gate, terminate, wait_for

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]


def lock_session_pid(engine, lock: locks.JobLock) -> int | None:
    return scalar(
        engine,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE :name",
        name=f"kpictl {lock.name} lock %",
    )


def jobs(engine) -> list:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, job_type, status, error, snapshots_created, metadata "
                    "FROM kpi_aggregation_jobs ORDER BY started_at"
                )
            )
        )


def assert_never_two_at_once(engine) -> None:
    """No two completed jobs of the pipeline overlap in time, and no snapshot is duplicated."""
    overlapping = scalar(
        engine,
        "SELECT count(*) FROM kpi_aggregation_jobs a JOIN kpi_aggregation_jobs b ON a.id < b.id "
        "WHERE a.status = 'completed' AND b.status = 'completed' "
        "AND a.job_type IN ('aggregate', 'backfill') AND b.job_type IN ('aggregate', 'backfill') "
        "AND tstzrange(a.started_at, a.completed_at) && tstzrange(b.started_at, b.completed_at)",
    )
    assert overlapping == 0
    duplicates = scalar(
        engine,
        "SELECT count(*) FROM (SELECT 1 FROM kpi_snapshots GROUP BY level, kpi_name, kpi_version, "
        "scope_id, period_start, period_end HAVING count(*) > 1) d",
    )
    assert duplicates == 0


def set_idle_session_timeout(engine, value: str) -> None:
    if scalar(engine, "SELECT current_setting('server_version_num')::int") < 140000:
        pytest.skip("idle_session_timeout needs PostgreSQL 14 or later")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        name = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.exec_driver_sql(
            f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '{value}'"  # a test's own name
        )


# --- 1. the lock is never lost silently -------------------------------------------------------


def test_idle_session_timeout_never_takes_the_lock_from_a_running_aggregate(db_url, engine):
    set_idle_session_timeout(engine, "2s")
    with engine.begin() as conn:
        f.completed_runs(conn, 5)
    with step_gate(engine) as open_gate:
        first = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_GATE="product")
        try:
            wait_for(lambda: scalar(engine, AT_GATE) == 1)  # in the product step, lock held
            time.sleep(3)  # the lock session idles past the server's 2 s idle_session_timeout
            assert lock_session_pid(engine, locks.PIPELINE) is not None
            second = spawn(["aggregate"], db_url)
            _stdout, second_stderr = second.communicate(timeout=60)
            time.sleep(3)  # and idles on while the first still computes
            open_gate()
        finally:
            stdout, stderr = first.communicate(timeout=60)
    assert second.returncode == 75, second_stderr
    assert first.returncode == 0, stderr
    assert "completed" in stdout
    assert [row.status for row in jobs(engine)] == ["completed"]
    assert_never_two_at_once(engine)


def test_a_killed_lock_session_stops_the_holder_before_it_commits(db_url, engine):
    with engine.begin() as conn:
        f.completed_runs(conn, 5)
    first = spawn(["aggregate"], db_url, KPICTL_DEBUG_STEP_SLEEP="product:4")
    try:
        wait_for(
            lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 5
        )
        wait_for(lambda: scalar(engine, SLEEPING) == 1)  # inside the product step
        terminate(engine, lock_session_pid(engine, locks.PIPELINE))
        # the lock is free: a second run takes it and finishes, while the first still computes
        second = spawn(["aggregate"], db_url)
        _stdout, second_stderr = second.communicate(timeout=60)
    finally:
        stdout, stderr = first.communicate(timeout=60)
    assert second.returncode == 0, second_stderr
    assert first.returncode == 1, stderr
    assert "lock lost" in stderr and "Traceback" not in stderr
    assert "aggregate failed: 5 snapshots" in stdout  # the committed run level, printed
    first_job, second_job = jobs(engine)
    assert first_job.status == "failed" and first_job.error.startswith("lock lost")
    assert first_job.snapshots_created == 5
    assert second_job.status == "completed"
    # everything past the run level comes from the second run only
    writers = scalar(
        engine, "SELECT array_agg(DISTINCT job_id) FROM kpi_snapshots WHERE level <> 'run'"
    )
    assert writers == [second_job.id]
    assert_never_two_at_once(engine)


def test_a_killed_lock_session_stops_a_history_fill_at_its_next_commit(db_url, engine):
    with engine.begin() as conn:
        f.many_tenants(conn, 2500, weeks=2)
    process = spawn(
        ["history", "fill", "--since", "2026-01-05", "--concurrency", "1"],
        db_url,
        KPICTL_DEBUG_STEP_SLEEP="fill:3",
    )
    try:
        wait_for(lambda: history_rows(engine) == 2000)  # the first chunk committed
        terminate(engine, lock_session_pid(engine, locks.HISTORY_FILL))
    finally:
        _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "lock lost" in stderr
    (job,) = jobs(engine)
    assert job.status == "failed" and job.error.startswith("lock lost")
    assert job.snapshots_created == history_rows(engine) == 2000
    assert job.metadata["rows_written"] == 2000


# --- 2. outages are 69 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restartable_server() -> Iterator[tuple[PgServer, Path]]:
    """A private PostgreSQL 15 cluster this module may restart (never the shared one)."""
    if not (PG15_BIN / "pg_ctl").exists():
        pytest.skip(f"no PostgreSQL 15 binaries in {PG15_BIN} (Debian's postgresql-15)")
    directory = Path(tempfile.mkdtemp(prefix="kpictl-restart-"))
    directory.chmod(0o755)  # the server runs as `postgres` when the tests run as root
    try:
        started = subprocess.run(
            [str(REPO / ".ci" / "pg15"), str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        yield PgServer(started.stdout.strip()), directory
    finally:
        subprocess.run([str(REPO / ".ci" / "pg15"), "stop", str(directory)], timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


def restart(directory: Path) -> None:
    command = [
        str(PG15_BIN / "pg_ctl"),
        "-D",
        str(directory / "data"),
        "-l",
        str(directory / "server.log"),
        "-m",
        "fast",
        "-w",
        "restart",
    ]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL)


@pytest.fixture
def restartable_db(restartable_server) -> Iterator[tuple[str, Path]]:
    from kpictl.services.schema import migrate

    server, directory = restartable_server
    name = f"r_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    engine = make_engine(url, test_settings(url))
    migrate.upgrade(engine, with_sources=True)
    engine.dispose()
    yield url, directory
    server.drop_database(name)


def test_a_server_restart_mid_run_exits_69_with_the_summary(restartable_db):
    url, directory = restartable_db
    engine = make_engine(url, test_settings(url))
    try:
        with engine.begin() as conn:
            f.completed_runs(conn, 5)
        process = spawn(["aggregate"], url, KPICTL_DEBUG_STEP_SLEEP="product:60")
        wait_for(
            lambda: scalar(engine, "SELECT count(*) FROM kpi_snapshots WHERE level = 'run'") == 5
        )
        wait_for(lambda: scalar(engine, SLEEPING) == 1)
        restart(directory)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 69, stderr
        assert "database unreachable" in stderr and "Traceback" not in stderr
        assert "aggregate failed: 5 snapshots" in stdout  # what the run level committed
        (job,) = jobs(engine)
        if job.status == "running":  # the server was not back in time: the next run fixes it
            assert spawn(["aggregate"], url).wait(timeout=60) == 0
            job = jobs(engine)[0]
            assert job.status == "abandoned"
        else:
            assert job.status == "failed" and job.snapshots_created == 5
        assert job.error
    finally:
        engine.dispose()


def test_a_server_restart_mid_history_fill_stops_it_exit_69(restartable_db):
    url, directory = restartable_db
    engine = make_engine(url, test_settings(url))
    try:
        with engine.begin() as conn:
            f.many_tenants(conn, 2500, weeks=2)
        process = spawn(
            ["history", "fill", "--since", "2026-01-05", "--concurrency", "1"],
            url,
            KPICTL_DEBUG_STEP_SLEEP="fill:3",
        )
        wait_for(lambda: history_rows(engine) == 2000)
        wait_for(lambda: scalar(engine, SLEEPING) == 1)  # the second chunk, before its commit
        restart(directory)
        _stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 69, stderr
        # nothing was written after the restart: no chunk goes on without the lock
        assert history_rows(engine) == 2000
        (job,) = jobs(engine)
        assert job.status in ("failed", "running")
        if job.status == "failed":
            assert job.snapshots_created == 2000
    finally:
        engine.dispose()


# --- 3. stops within the grace period ---------------------------------------------------------


def history_rows(engine) -> int:
    return scalar(engine, "SELECT count(*) FROM kpi_history")


@pytest.mark.parametrize("concurrency", [1, 2])
def test_sigterm_stops_a_large_history_fill_within_the_grace(db_url, engine, concurrency):
    with engine.begin() as conn:
        f.many_tenants(conn, 2500, weeks=8)  # 20,000 rows in chunks of 1,000 tenants
    process = spawn(
        ["history", "fill", "--since", "2026-01-05", "--concurrency", str(concurrency)],
        db_url,
        KPICTL_DEBUG_STEP_SLEEP="fill:10",
        KPICTL_STOP_GRACE_SECONDS="1",
    )
    committed_first = 8000 * concurrency
    # the first chunk(s) committed, 10 s after each chunk's work (the timeout is for a loaded CI)
    wait_for(lambda: history_rows(engine) == committed_first)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    stopped_after = time.monotonic() - started
    assert process.returncode == 143, stderr
    # the grace is 1 s, the step 10 s: stopping well before the step ends is the grace at work
    # (the margin is for a loaded CI machine)
    assert stopped_after < 8, stderr
    (job,) = jobs(engine)
    assert job.status == "cancelled" and job.error == "cancelled by SIGTERM"
    assert job.snapshots_created == job.metadata["rows_written"] == history_rows(engine)
    assert history_rows(engine) == committed_first
    wait_for(lambda: scalar(engine, SLEEPING) == 0, timeout=10)  # cancelled server-side


def test_a_stop_never_retries_a_cancelled_chunk_tenant_by_tenant(db_url, engine):
    """After the server-side cancel the chunk is not split and retried (which would write)."""
    with engine.begin() as conn:
        f.many_tenants(conn, 40, weeks=1)
    process = spawn(
        ["history", "fill", "--concurrency", "1"],
        db_url,
        KPICTL_DEBUG_STEP_SLEEP="fill:10",
        KPICTL_STOP_GRACE_SECONDS="1",
    )
    wait_for(lambda: scalar(engine, SLEEPING) == 1)
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert history_rows(engine) == 0
    (job,) = jobs(engine)
    assert job.status == "cancelled" and job.snapshots_created == 0
