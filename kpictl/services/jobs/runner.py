"""One job runner: the lifecycle every long job shares (each kind of job supplies its work and
result, as dbt's tasks do; the runner owns the rest).

Aggregate, backfill, history fill and retention supply only their work and their result type,
as a `JobWork` subclass, and call

    result = run_job(engine, JobSpec(lock.PIPELINE, "aggregate", metadata=...), work, stop=stop)

The runner, in order:

1. takes `spec.lock` (`lock.hold`): LockHeld (exit 75) when another run holds it, or waits
   `spec.wait_seconds`; taking it marks the kind's orphaned job rows `abandoned` (logged, and
   counted in the new row's metadata as `abandoned_marked`);
2. starts nothing when a stop was requested meanwhile (Interrupted, 130/143, no job row);
3. starts the job row, `running`, with `lock_backend_pid` (how `lock.lock_holder` and doctor
   name the holder's job);
4. calls `work.run(job)`. `job.engine` is the lock-guarded engine (every commit first checks
   that the lock is still held, `lock.HeldLock.guard`); `job.connect()` opens a guarded
   connection that the stop request watches (its query is cancelled server-side after the grace
   period); `job.watched(connection)` watches one more (parallel work); `job.stop` is checked
   between steps;
5. ends the row from `work.row(result)`, on the guarded engine (a job that lost its lock is never
   recorded as completed): `completed`, or `failed` when the row says `failure`;
6. on any exception (the work's, a lost lock's, a failed finish): ends the row `cancelled` (a stop
   request, Interrupted, Ctrl-C) or `failed`, with the error text and `work.row(work.partial())`,
   i.e. what was committed, on the plain engine, retried briefly while the server restarts and
   never raising (`close_job_quietly`): the real error is the one reported. It then raises the
   operator's error (`stop.interrupted()` after a stop request, else `errors.as_kpictl_error`)
   with the partial result attached (`KpictlError.partial`, for the CLI's summary); an exception
   that is no operator's error (a bug) is re-raised as it is, traceback and all;
7. after a successful end, when a stop was requested while the last step finished: the job stays
   `completed` and Interrupted (130/143) is raised with the result attached.

Releasing the lock never hides the outcome either (`lock.hold` only logs a failed unlock).
`work.ended(result, job)` is called once the row is closed, either way, with `job.status` and
`job.duration_ms` set (the pipeline copies them into its result).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

from kpictl.errors import Interrupted, as_kpictl_error, describe_error, server_gone
from kpictl.log_context import job_logged_as
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs.rows import finish_job, start_job
from kpictl.services.jobs.stop import StopRequest

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class JobSpec:
    """Which job: its lock, its row's type and start values, how long to wait for the lock."""

    lock: locks.JobLock
    job_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    kpi_names: list[str] | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    wait_seconds: float | None = None  # see `lock.hold`: None = exit 75 at once
    on_wait: Callable[[], None] | None = None


@dataclass(frozen=True)
class RowEnd:
    """What the job row records about a result (complete or partial)."""

    snapshots_created: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # the work ended but the job failed: the row's error text


@dataclass
class Job:
    """The running job, as the work sees it."""

    id: uuid.UUID
    job_type: str
    engine: Engine  # lock-guarded: every commit checks the lock first
    stop: StopRequest
    held: locks.HeldLock
    started: float  # time.monotonic() when the runner was called (lock wait included)
    status: str = "running"
    duration_ms: int = 0

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A guarded connection, watched by the stop request while it is open."""
        with self.engine.connect() as connection, self.watched(connection):
            yield connection

    @contextmanager
    def watched(self, connection: Connection) -> Iterator[Connection]:
        dbapi_connection = connection.connection.dbapi_connection
        self.stop.watch(dbapi_connection)
        try:
            yield connection
        finally:
            self.stop.unwatch(dbapi_connection)

    def _ended(self, status: str, recorded_ms: int | None = None) -> None:
        """The job's end: its duration as its row records it, else as measured here."""
        self.status = status
        measured = round((time.monotonic() - self.started) * 1000)
        self.duration_ms = measured if recorded_ms is None else recorded_ms


class JobWork(Generic[R]):
    """What a kind of job supplies; subclass it."""

    def run(self, job: Job) -> R:
        """Do the work; return the result."""
        raise NotImplementedError

    def partial(self) -> R:
        """After a failure: the result of what was committed so far."""
        raise NotImplementedError

    def row(self, result: R) -> RowEnd:
        """The job row's counts and metadata for `result`."""
        return RowEnd()

    def ended(self, result: R, job: Job) -> None:
        """Called once the row is closed (`job.status`, `job.duration_ms` are set)."""


def run_job(
    engine: Engine, spec: JobSpec, work: JobWork[R], *, stop: StopRequest | None = None
) -> R:
    """Run `work` as one job of `spec`'s kind (see the module docstring)."""
    stop = stop if stop is not None else StopRequest()
    started = time.monotonic()
    with locks.hold(
        engine, spec.lock, wait_seconds=spec.wait_seconds, stop=stop, on_wait=spec.on_wait
    ) as held:
        stop.check()
        if held.abandoned:
            log.warning(
                "Marked %d job(s) left running by a dead process as abandoned", held.abandoned
            )
        job_id = start_job(
            engine,
            spec.job_type,
            kpi_names=spec.kpi_names,
            period_start=spec.period_start,
            period_end=spec.period_end,
            metadata={
                **spec.metadata,
                "lock_backend_pid": held.backend_pid,
                "abandoned_marked": held.abandoned,
            },
        )
        job = Job(job_id, spec.job_type, held.guard(engine), stop, held, started)
        try:
            with job_logged_as(job_id):  # JSON log lines carry the job ID
                result = _run_and_finish(job, work)
        except BaseException as exc:
            with job_logged_as(job_id):
                _end_early(engine, job, work, exc)
        # Asked to stop during the last step, which then finished: the job is complete, and the
        # exit code still says the process was stopped (130/143), as the operator asked.
        if stop.requested:
            raise stop.interrupted().with_partial(result)
        return result


def _run_and_finish(job: Job, work: JobWork[R]) -> R:
    """Run the work and end its row from the result (on the guarded engine)."""
    result = work.run(job)
    row = work.row(result)
    status = "failed" if row.failure is not None else "completed"
    # on the guarded engine: a job that lost its lock is never recorded as completed
    duration_ms = finish_job(
        job.engine,
        job.id,
        status,
        snapshots_created=row.snapshots_created,
        error=row.failure,
        metadata=row.metadata,
    )
    job._ended(status, duration_ms)
    work.ended(result, job)
    return result


def _end_early(engine: Engine, job: Job, work: JobWork[Any], exc: BaseException) -> None:
    """Close the row `cancelled` / `failed` with what was committed, then raise the operator's
    error carrying that partial result (always raises)."""
    stop = job.stop
    cancelled = stop.requested or isinstance(exc, Interrupted | KeyboardInterrupt | SystemExit)
    error = f"cancelled by {stop.signal_name}" if stop.requested else describe_error(exc)
    job._ended("cancelled" if cancelled else "failed")
    partial = work.partial()
    row = work.row(partial)
    close_job_quietly(
        lambda: finish_job(
            engine,
            job.id,
            job.status,
            snapshots_created=row.snapshots_created,
            error=error,
            metadata=row.metadata,
        ),
        f"job {job.id}",
    )
    # The error itself reaches the operator once, from the CLI's single catch point.
    log.info(
        "%s %s after %dms (job %s)",
        job.job_type.replace("_", " ").capitalize(),
        job.status,
        job.duration_ms,
        job.id,
    )
    work.ended(partial, job)
    if stop.requested:
        raise stop.interrupted().with_partial(partial) from exc
    reported = as_kpictl_error(exc)
    if reported is None:  # a bug: the traceback matters more than the summary
        raise exc
    reported.with_partial(partial)
    if reported is exc:
        raise exc
    raise reported from exc


def close_job_quietly(finish: Callable[[], Any], what: str) -> None:
    """Record a job's end after a failure, retrying briefly while the server restarts; when it
    stays unreachable, log it: the next run marks the row `abandoned`. Never raises, so the
    original error is the one reported."""
    for attempt in range(4):
        try:
            finish()
            return
        except Exception as exc:
            if not server_gone(exc) or attempt == 3:
                log.warning(
                    "could not record the end of %s (%s); the next run will mark it abandoned",
                    what,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                return
            time.sleep(1.0)
