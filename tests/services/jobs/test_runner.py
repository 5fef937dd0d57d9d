"""The job runner (`kpictl.services.jobs.runner`) on a real database: a job of a kind of its own
(its own lock and job type) whose work commits one row per step into a table of its own."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from sqlalchemy import Engine, text

from kpictl.errors import CommandFailed, ExitCode, Interrupted, LockHeld, LockLost
from kpictl.services.jobs.lock import JobLock
from kpictl.services.jobs.rows import get_job, start_job
from kpictl.services.jobs.runner import Job, JobSpec, JobWork, RowEnd, run_job
from kpictl.services.jobs.stop import StopRequest
from tests.conftest import libpq
from tests.helpers import SLEEPING, scalar, wait_for

TEST_LOCK = JobLock("runner test", 0x6B7069_72746E, ("runner_test",))  # "kpirtn"


class Steps(JobWork[list[int]]):
    """Commits steps 1..n, one transaction each, on the job's guarded engine; then `then`."""

    def __init__(self, steps: int, then=None, failure: str | None = None):
        self.steps, self.then, self.failure = steps, then, failure
        self.committed: list[int] = []
        self.job: Job | None = None

    def run(self, job: Job) -> list[int]:
        self.job = job
        for step in range(1, self.steps + 1):
            job.stop.check()
            with job.engine.begin() as connection:
                connection.execute(text("INSERT INTO runner_steps VALUES (:n)"), {"n": step})
            self.committed.append(step)
        if self.then is not None:
            self.then(job)
        return list(self.committed)

    def partial(self) -> list[int]:
        return list(self.committed)

    def row(self, result: list[int]) -> RowEnd:
        return RowEnd(len(result), {"steps": result}, self.failure)


@pytest.fixture
def steps_table(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE runner_steps (n int)"))
    return engine


def spec(**metadata) -> JobSpec:
    return JobSpec(TEST_LOCK, "runner_test", metadata)


def only_job(engine: Engine) -> dict:
    with engine.connect() as connection:
        [job_id] = connection.execute(
            text("SELECT id FROM kpi_aggregation_jobs WHERE job_type = 'runner_test'")
        ).scalars()
    return get_job(engine, job_id)


def written(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT n FROM runner_steps ORDER BY n")).scalars())


def test_completed(steps_table):
    work = Steps(3)
    assert run_job(steps_table, spec(argv=["kpictl", "test"]), work) == [1, 2, 3]
    job = only_job(steps_table)
    assert job["status"] == "completed" and job["error"] is None
    assert job["snapshots_created"] == 3 and job["metadata"]["steps"] == [1, 2, 3]
    assert job["metadata"]["argv"] == ["kpictl", "test"]
    assert job["metadata"]["lock_backend_pid"] == work.job.held.backend_pid
    assert job["metadata"]["abandoned_marked"] == 0
    assert work.job.status == "completed" and work.job.duration_ms >= 0
    assert written(steps_table) == [1, 2, 3]


def test_work_that_reports_a_failure_ends_failed(steps_table):
    run_job(steps_table, spec(), Steps(2, failure="1 item failed"))
    job = only_job(steps_table)
    assert job["status"] == "failed" and job["error"] == "1 item failed"
    assert job["snapshots_created"] == 2


def test_failed_with_partial_result(steps_table):
    def fail(job: Job) -> None:
        raise CommandFailed("the third step broke")

    with pytest.raises(CommandFailed) as raised:
        run_job(steps_table, spec(), Steps(2, then=fail))
    assert raised.value.partial == [1, 2]  # what was committed, for the CLI's summary
    job = only_job(steps_table)
    assert job["status"] == "failed" and job["error"] == "the third step broke"
    assert job["snapshots_created"] == 2 and job["metadata"]["steps"] == [1, 2]
    assert written(steps_table) == [1, 2]


def test_a_bug_keeps_its_traceback_and_still_closes_the_row(steps_table):
    def bug(job: Job) -> None:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        run_job(steps_table, spec(), Steps(1, then=bug))
    job = only_job(steps_table)
    assert job["status"] == "failed" and job["error"] == "ZeroDivisionError: division by zero"
    assert job["snapshots_created"] == 1


def test_a_database_error_becomes_the_operators_error(steps_table):
    def broken(job: Job) -> None:
        with job.engine.begin() as connection:
            connection.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(CommandFailed) as raised:
        run_job(steps_table, spec(), Steps(1, then=broken))
    assert raised.value.partial == [1]
    assert only_job(steps_table)["status"] == "failed"


def test_cancelled_on_a_stop_request(steps_table):
    stop = StopRequest(grace_seconds=0.2)

    def stop_once_it_sleeps() -> None:
        wait_for(lambda: scalar(steps_table, SLEEPING) == 1, what="the long step's pg_sleep")
        stop.request(ExitCode.SIGTERM, "SIGTERM")

    def long_step(job: Job) -> None:
        threading.Thread(target=stop_once_it_sleeps, daemon=True).start()
        with job.connect() as connection:  # watched: cancelled server-side after the grace
            connection.execute(text("SELECT pg_sleep(30)"))

    with pytest.raises(Interrupted) as raised:
        run_job(steps_table, spec(), Steps(2, then=long_step), stop=stop)
    assert raised.value.exit_code == ExitCode.SIGTERM
    assert raised.value.partial == [1, 2]
    job = only_job(steps_table)
    assert job["status"] == "cancelled" and job["error"] == "cancelled by SIGTERM"
    assert job["snapshots_created"] == 2


def test_a_stop_that_lands_between_two_statements_still_cancels_the_next(steps_table):
    """The first cancel reaches an idle backend, which drops it; the cancel is repeated while
    the connection is watched, so the step's next statement does not run to its end."""
    stop = StopRequest(grace_seconds=0.1)

    def step_with_a_gap(job: Job) -> None:
        with job.connect() as connection:
            connection.execute(text("SELECT 1"))
            stop.request(ExitCode.SIGTERM, "SIGTERM")
            time.sleep(0.6)  # the client is busy between statements when the grace ends
            connection.execute(text("SELECT pg_sleep(30)"))

    with pytest.raises(Interrupted) as raised:
        run_job(steps_table, spec(), Steps(1, then=step_with_a_gap), stop=stop)
    assert raised.value.partial == [1]
    job = only_job(steps_table)
    # cancelled: with one cancel only, the pg_sleep ran to its end and the job completed
    assert job["status"] == "cancelled" and job["error"] == "cancelled by SIGTERM"


def test_a_connection_no_longer_watched_is_never_cancelled(engine):
    stop = StopRequest(grace_seconds=0)
    with engine.connect() as connection:
        stop.watch(connection.connection.dbapi_connection)
        stop.unwatch(connection.connection.dbapi_connection)
        stop.request(ExitCode.SIGTERM, "SIGTERM")
        # the cancels run every quarter second meanwhile
        assert connection.execute(text("SELECT pg_sleep(1), 'finished'")).one()[1] == "finished"
    stop.close()


def test_no_cancel_after_the_request_is_closed(engine):
    stop = StopRequest(grace_seconds=0.2)
    with engine.connect() as connection:
        stop.watch(connection.connection.dbapi_connection)
        stop.request(ExitCode.SIGTERM, "SIGTERM")
        stop.close()  # the job ended within the grace
        assert connection.execute(text("SELECT pg_sleep(1), 'finished'")).one()[1] == "finished"


def test_stopped_as_the_last_step_finished_is_completed_and_still_interrupted(steps_table):
    stop = StopRequest(grace_seconds=30)

    def ask_to_stop(job: Job) -> None:
        stop.request(ExitCode.SIGINT, "SIGINT")

    with pytest.raises(Interrupted) as raised:
        run_job(steps_table, spec(), Steps(1, then=ask_to_stop), stop=stop)
    stop.close()
    assert raised.value.exit_code == ExitCode.SIGINT and raised.value.partial == [1]
    assert only_job(steps_table)["status"] == "completed"


def test_abandoned_predecessor(steps_table):
    orphan = start_job(steps_table, "runner_test", metadata={"pid": 1})  # its process died
    other_kind = start_job(steps_table, "aggregate")  # another lock's job: not ours to judge
    run_job(steps_table, spec(), Steps(1))
    assert get_job(steps_table, orphan)["status"] == "abandoned"
    assert get_job(steps_table, other_kind)["status"] == "running"
    with steps_table.connect() as connection:
        new = connection.execute(
            text(
                "SELECT status, metadata FROM kpi_aggregation_jobs "
                "WHERE job_type = 'runner_test' AND id <> :orphan"
            ),
            {"orphan": orphan},
        ).one()
    assert new.status == "completed" and new.metadata["abandoned_marked"] == 1


def test_lock_held_exits_75_without_a_job_row(steps_table, db_url):
    work = Steps(1)
    with psycopg.connect(libpq(db_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (TEST_LOCK.key,))
        running = start_job(steps_table, "runner_test")  # the holder's live job
        with pytest.raises(LockHeld) as raised:
            run_job(steps_table, spec(), work)
    assert raised.value.exit_code == ExitCode.TEMPFAIL == 75
    assert "another runner test run holds the lock" in raised.value.message
    assert work.job is None and written(steps_table) == []
    assert get_job(steps_table, running)["status"] == "running"  # never abandoned while held


def test_lock_lost_before_a_commit_fails_the_job(steps_table, db_url):
    def lose_the_lock(job: Job) -> None:
        with psycopg.connect(libpq(db_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (job.held.backend_pid,))
        with job.engine.begin() as connection:
            connection.execute(text("INSERT INTO runner_steps VALUES (99)"))

    with pytest.raises(LockLost, match=r"^lock lost"):
        run_job(steps_table, spec(), Steps(1, then=lose_the_lock))
    job = only_job(steps_table)
    assert job["status"] == "failed" and job["error"].startswith("lock lost")
    assert written(steps_table) == [1]  # the step after the loss rolled back


def test_job_id_is_a_uuid(steps_table):
    work = Steps(0)
    run_job(steps_table, spec(), work)
    assert isinstance(work.job.id, uuid.UUID)
