"""Job locks: one run of a kind at a time across all hosts, and no job row left `running`.

Each kind of long job (the pipeline's aggregate and backfill, retention, history fill, migrate)
holds a session-level PostgreSQL advisory lock on a stable key, on a dedicated connection of its
own (autocommit, never returned to a pool) for the whole run. If the process dies, PostgreSQL
drops the connection and with it the lock; the job row it left `running` is marked `abandoned` by
the next run of the same kind, which is the only one that can know its predecessor is gone.

The lock connection idles for the whole run, so it is told never to time out idle
(`idle_session_timeout = 0`, `idle_in_transaction_session_timeout = 0`) and to detect a dead peer
(TCP keepalives both ways). It can still die (a DBA's `pg_terminate_backend`, a server restart, a
broken network), and then another run may take the lock. So the holder never trusts it blindly:
**before every commit of work** (`HeldLock.guard(engine)` hooks SQLAlchemy's `commit` event of
the work connections) the work transaction itself

1. takes `pg_advisory_xact_lock_shared(fence_key)`, held until that transaction ends, and
2. checks in `pg_locks` that the lock's backend, identified by pid *and* `backend_start` (a pid
   alone may be reused by a new backend after a restart or a kill), still holds the session lock,
   and that the server has not restarted since (`pg_postmaster_start_time()`).

If not, the commit raises `LockLost` instead: the transaction rolls back, the job stops and
ends `failed` ("lock lost: ..."), exit 1 (69 when the server restarted: an outage).

Why it cannot be fooled: `pg_locks` reads the lock manager's live state (not an MVCC snapshot),
so a passing check proves the lock was held at that instant, by that very session. What remains
is the moment between the check and the COMMIT: the lock could be lost in between and a rival
could take it. The fence closes that gap: a run that has just taken the session lock waits for an
*exclusive* fence lock (`_wait_for_fence`) before it marks anything abandoned or writes anything,
and it cannot get one while any transaction of the previous holder that passed the check is still
open. Every commit of the old holder therefore either passed its check and finished before the
new holder starts, or fails its check. A live holder's job row is never marked abandoned: the next
run marks rows only while it holds the (exclusive) lock and after the fence, i.e. when no other
session holds the lock and no checked commit is in flight.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, event, text

from kpictl.errors import LockHeld, LockLost
from kpictl.services.jobs.rows import abandon_jobs
from kpictl.services.jobs.stop import StopRequest

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
# How long a new holder waits for the previous holder's checked commits to end (normally ms).
FENCE_WAIT_SECONDS = 60.0
# Server-side keepalives of the lock connection: a dead kpictl host frees its lock in ~1 min.
LOCK_SESSION_SETTINGS = {
    "idle_session_timeout": "0",  # PostgreSQL 14 and later
    "idle_in_transaction_session_timeout": "0",
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


@dataclass(frozen=True)
class JobLock:
    name: str  # for messages: "pipeline", "retention", "history fill"
    key: int  # pg_advisory_lock(bigint) key, shared by every kpictl host
    job_types: tuple[str, ...]  # the job rows this lock guards

    @property
    def fence_key(self) -> int:
        """The key of the fence lock (see the module docstring): the lock's key with bit 55 set
        (the keys are 7 bytes, so it never equals another lock's key)."""
        return self.key | (1 << 55)


PIPELINE = JobLock("pipeline", 0x6B7069_63746C, ("aggregate", "backfill"))  # "kpictl"
RETENTION = JobLock("retention", 0x6B7069_726574, ("retention",))  # "kpiret"
HISTORY_FILL = JobLock("history fill", 0x6B7069_686973, ("history_fill",))  # "kpihis"
MIGRATE = JobLock("migrate", 0x6B7069_4D49, ())  # "kpi" "MI"; migrate writes no job row
PIPELINE_LOCK_KEY = PIPELINE.key


@dataclass(frozen=True)
class LockHolder:
    backend_pid: int
    application_name: str
    since: datetime | None  # the holder's job start, else its session's start
    job_id: str | None = None
    host: str | None = None
    pid: str | None = None
    backend_start: datetime | None = None  # the holding session's start
    client: str | None = None  # its client address (None over a Unix socket)
    held_seconds: float = 0.0  # since backend_start: a session-level lock has no acquisition time
    waiting: int = 0  # sessions blocked in pg_advisory_lock() on the same key

    def describe(self) -> str:
        who = f"host {self.host} pid {self.pid}" if self.host else f"'{self.application_name}'"
        job = f"job {self.job_id}" if self.job_id else "no job row yet"
        since = self.since.isoformat() if self.since else "unknown"
        return f"{who} ({job}, since {since}, backend pid {self.backend_pid})"


@dataclass(frozen=True)
class HeldLock:
    connection: Connection
    backend_pid: int
    abandoned: int  # orphaned job rows of this kind marked `abandoned` on taking the lock
    lock: JobLock = PIPELINE
    backend_start: datetime | None = None  # with backend_pid: the lock's session, exactly
    postmaster_start: datetime | None = None  # the server's start when the lock was taken
    _guarded: dict[int, Engine] = field(default_factory=dict, repr=False, compare=False)

    def verify(self, connection: Connection) -> None:
        """In `connection`'s open transaction: take the fence (shared, until the transaction
        ends) and raise LockLost unless this lock's session still holds the lock."""
        connection.execute(
            text("SELECT pg_advisory_xact_lock_shared(:fence)"), {"fence": self.lock.fence_key}
        )
        row = connection.execute(
            VERIFY,
            {
                "pid": self.backend_pid,
                "backend_start": self.backend_start,
                "high": self.lock.key >> 32,
                "low": self.lock.key & 0xFFFFFFFF,
            },
        ).one()
        if row.restarted_at != self.postmaster_start:
            raise LockLost(
                f"lock lost: the database server restarted during the run "
                f"(at {row.restarted_at.isoformat()}); this transaction was rolled back",
                server_restarted=True,
            )
        if not row.held:
            raise LockLost(
                f"lock lost: the {self.lock.name} lock's connection (backend pid "
                f"{self.backend_pid}) is gone or no longer holds the lock; "
                f"this transaction was rolled back and the run stopped"
            )

    def guard(self, engine: Engine) -> Engine:
        """`engine`, whose connections call `verify` before every commit (a derived engine
        sharing the pool: the caller's own engine, e.g. for job rows, stays unguarded)."""
        if id(engine) not in self._guarded:
            guarded = engine.execution_options()

            @event.listens_for(guarded, "commit")
            def _verify_before_commit(connection: Connection) -> None:
                self.verify(connection)

            self._guarded[id(engine)] = guarded
        return self._guarded[id(engine)]

    def guard_connection(self, connection: Connection) -> Connection:
        """The same for one connection already open (migrate hands its connection to Alembic)."""
        event.listen(connection, "commit", self.verify)
        return connection


LOCK_SESSIONS = text(
    """
SELECT l.pid AS backend_pid, l.granted, a.application_name, a.client_addr::text AS client,
       a.backend_start, extract(epoch FROM now() - a.backend_start) AS held_seconds
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = :high AND l.objid::bigint = :low
ORDER BY l.granted DESC, a.backend_start
"""
)
# The holder's job row names the lock's backend (`lock_backend_pid`, written by jobs.runner).
HOLDER_JOB = text(
    """
SELECT id, metadata->>'host' AS host, metadata->>'pid' AS pid, started_at
FROM kpi_aggregation_jobs
WHERE status = 'running' AND metadata->>'lock_backend_pid' = :backend_pid
ORDER BY started_at DESC LIMIT 1
"""
)


def lock_holder(connection: Connection, lock: JobLock = PIPELINE) -> LockHolder | None:
    """Who holds `lock` in this database right now (None when free), with its running job row
    when there is one (and a `kpi_aggregation_jobs` table: doctor asks unmigrated databases too).

    A bigint advisory key shows in pg_locks as classid = key >> 32, objid = key & 0xffffffff,
    objsubid = 1."""
    rows = connection.execute(
        LOCK_SESSIONS, {"high": lock.key >> 32, "low": lock.key & 0xFFFFFFFF}
    ).all()
    row = next((row for row in rows if row.granted), None)
    if row is None:
        return None
    job = None
    if connection.execute(text("SELECT to_regclass('kpi_aggregation_jobs')")).scalar() is not None:
        job = connection.execute(HOLDER_JOB, {"backend_pid": str(row.backend_pid)}).first()
    return LockHolder(
        backend_pid=row.backend_pid,
        application_name=row.application_name,
        since=(job.started_at if job else None) or row.backend_start,
        job_id=str(job.id) if job else None,
        host=job.host if job else None,
        pid=job.pid if job else None,
        backend_start=row.backend_start,
        client=row.client,
        held_seconds=float(row.held_seconds or 0),
        waiting=sum(1 for other in rows if not other.granted),
    )


def lock_waiters(connection: Connection, lock: JobLock = PIPELINE) -> int:
    """How many sessions wait in pg_advisory_lock() for `lock` (kpictl itself polls instead)."""
    rows = connection.execute(
        LOCK_SESSIONS, {"high": lock.key >> 32, "low": lock.key & 0xFFFFFFFF}
    ).all()
    return sum(1 for row in rows if not row.granted)


VERIFY = text(
    """
SELECT EXISTS (
  SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
  WHERE l.pid = :pid AND a.backend_start = :backend_start
    AND l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid::bigint = :high AND l.objid::bigint = :low
) AS held, pg_postmaster_start_time() AS restarted_at
"""
)


@contextmanager
def hold(
    engine: Engine,
    lock: JobLock,
    *,
    wait_seconds: float | None = None,
    stop: StopRequest | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[HeldLock]:
    """Hold `lock` for the block, after marking its kind's orphaned job rows `abandoned`.

    `wait_seconds`: None = LockHeld (exit 75) at once, a number = poll that long, math.inf = for
    ever (`on_wait` is called once when it starts waiting). A stop request while waiting ends the
    wait as an interruption (130/143), not 75. Polling (rather than a blocking pg_advisory_lock)
    keeps no snapshot open while waiting.

    Work must run on `held.guard(engine)` so that each commit checks the lock first. Releasing
    the lock at the end never hides the block's own outcome: when the connection is already
    gone (which released the lock anyway), the failed unlock is only logged."""
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        _prepare(connection, lock)
        deadline = time.monotonic() + (wait_seconds or 0)
        waiting = False
        while not _try_lock(connection, lock.key):
            if stop is not None and stop.requested:
                raise stop.interrupted()
            if wait_seconds is None or time.monotonic() >= deadline:
                holder = lock_holder(connection, lock)
                described = holder.describe() if holder else "another session (just released?)"
                waited = "" if wait_seconds is None else f" after waiting {_seconds(wait_seconds)}"
                raise LockHeld(
                    f"another {lock.name} run holds the lock{waited}: {described}",
                    hint="the next timer run will try again; use --wait to wait for it"
                    if lock is PIPELINE
                    else "the next timer run will try again",
                )
            if on_wait is not None and not waiting:
                on_wait()
            waiting = True
            time.sleep(POLL_SECONDS)
        try:
            _wait_for_fence(connection, lock, stop)
            identity = connection.execute(
                text(
                    "SELECT pid, backend_start, pg_postmaster_start_time() AS postmaster_start "
                    "FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                )
            ).one()
            yield HeldLock(
                connection,
                identity.pid,
                mark_abandoned(engine, lock) if lock.job_types else 0,
                lock,
                identity.backend_start,
                identity.postmaster_start,
            )
        finally:
            _unlock(connection, lock.key)
    finally:
        _close_quietly(connection)


def _prepare(connection: Connection, lock: JobLock) -> None:
    """Name the lock's session (found in pg_stat_activity) and keep it alive while it idles."""
    connection.execute(
        text("SELECT set_config('application_name', :name, false)"),
        {"name": f"kpictl {lock.name} lock {socket.gethostname()}:{os.getpid()}"[:63]},
    )
    settings = dict(LOCK_SESSION_SETTINGS)
    if (connection.dialect.server_version_info or (0,)) < (14,):
        del settings["idle_session_timeout"]
    for name, value in settings.items():
        connection.execute(
            text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
        )


def _try_lock(connection: Connection, key: int) -> bool:
    return bool(
        connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
    )


def _wait_for_fence(connection: Connection, lock: JobLock, stop: StopRequest | None) -> None:
    """Wait until no transaction of a previous holder that passed its lock check is still open
    (each holds the fence shared until it ends): take the fence exclusively once, release it."""
    deadline = time.monotonic() + FENCE_WAIT_SECONDS
    while not _try_lock(connection, lock.fence_key):
        if stop is not None and stop.requested:
            raise stop.interrupted()
        if time.monotonic() >= deadline:
            raise LockHeld(
                f"the previous {lock.name} run lost its lock but is still committing "
                f"after {FENCE_WAIT_SECONDS:g}s",
                hint="the next timer run will try again",
            )
        time.sleep(0.05)
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock.fence_key})


def _unlock(connection: Connection, key: int) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except Exception as exc:  # the connection is gone, and the lock went with it
        log.debug("could not release the lock (its connection is gone): %s", exc)


def _close_quietly(connection: Connection) -> None:
    try:
        connection.close()
    except Exception as exc:
        log.debug("could not close the lock connection: %s", exc)


def _seconds(value: float) -> str:
    return "indefinitely" if math.isinf(value) else f"{value:g}s"


ABANDONED_ERROR = (
    "abandoned: its process ended or lost its lock without finishing the job "
    "(found by the next run that took its lock)"
)


def mark_abandoned(engine: Engine, lock: JobLock) -> int:
    """Jobs of `lock`'s kind still unfinished while we hold it belong to processes that ended or
    lost the lock (called after the fence: none of them can still commit work)."""
    with engine.begin() as connection:
        return abandon_jobs(connection, ABANDONED_ERROR, job_types=lock.job_types)
