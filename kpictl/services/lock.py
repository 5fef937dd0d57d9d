"""Job locks: one run of a kind at a time across all hosts, and no job row left `running`.

Each kind of long job (the pipeline's aggregate and backfill, retention, history fill) holds a
session-level PostgreSQL advisory lock on a stable key, on a dedicated connection of its own
(autocommit, never returned to a pool) for the whole run. If the process dies, PostgreSQL drops
the connection and with it the lock; the job row it left `running` is marked `abandoned` by the
next run of the same kind, which is the only one that can know its predecessor is gone.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from kpictl.errors import LockHeld
from kpictl.services.stop import StopRequest

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class JobLock:
    name: str  # for messages: "pipeline", "retention", "history fill"
    key: int  # pg_advisory_lock(bigint) key, shared by every kpictl host
    job_types: tuple[str, ...]  # the job rows this lock guards


PIPELINE = JobLock("pipeline", 0x6B7069_63746C, ("aggregate", "backfill"))  # "kpictl"
RETENTION = JobLock("retention", 0x6B7069_726574, ("retention",))  # "kpiret"
HISTORY_FILL = JobLock("history fill", 0x6B7069_686973, ("history_fill",))  # "kpihis"
PIPELINE_LOCK_KEY = PIPELINE.key


@dataclass(frozen=True)
class LockHolder:
    backend_pid: int
    application_name: str
    since: datetime | None
    job_id: str | None = None
    host: str | None = None
    pid: str | None = None

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


def lock_holder(connection: Connection, lock: JobLock = PIPELINE) -> LockHolder | None:
    """Who holds `lock` in this database right now (None when free)."""
    row = connection.execute(
        text(
            """
SELECT a.pid AS backend_pid, a.application_name, a.backend_start, j.id AS job_id,
       j.metadata->>'host' AS host, j.metadata->>'pid' AS holder_pid, j.started_at
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
LEFT JOIN LATERAL (
  SELECT id, metadata, started_at FROM kpi_aggregation_jobs
  WHERE status = 'running' AND metadata->>'lock_backend_pid' = a.pid::text
  ORDER BY started_at DESC LIMIT 1
) j ON true
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = :high AND l.objid::bigint = :low
"""
        ),
        {"high": lock.key >> 32, "low": lock.key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return None
    return LockHolder(
        backend_pid=row.backend_pid,
        application_name=row.application_name,
        since=row.started_at or row.backend_start,
        job_id=str(row.job_id) if row.job_id else None,
        host=row.host,
        pid=row.holder_pid,
    )


@contextmanager
def hold(
    engine: Engine,
    lock: JobLock,
    *,
    wait_seconds: float | None = None,
    stop: StopRequest | None = None,
) -> Iterator[HeldLock]:
    """Hold `lock` for the block, after marking its kind's orphaned job rows `abandoned`.

    `wait_seconds`: None = LockHeld (exit 75) at once, a number = poll that long, math.inf = for
    ever. A stop request while waiting ends the wait as an interruption (130/143), not 75.
    Polling (rather than a blocking pg_advisory_lock) keeps no snapshot open while waiting."""
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"),
            {"name": f"kpictl {lock.name} lock {socket.gethostname()}:{os.getpid()}"[:63]},
        )
        deadline = time.monotonic() + (wait_seconds or 0)
        while not _try_lock(connection, lock):
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
            time.sleep(POLL_SECONDS)
        backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        try:
            yield HeldLock(connection, backend_pid, mark_abandoned(engine, lock))
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock.key})
    finally:
        connection.close()


def _try_lock(connection: Connection, lock: JobLock) -> bool:
    return bool(
        connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": lock.key}
        ).scalar_one()
    )


def _seconds(value: float) -> str:
    return "indefinitely" if math.isinf(value) else f"{value:g}s"


def mark_abandoned(engine: Engine, lock: JobLock) -> int:
    """Jobs of `lock`'s kind still `running` while we hold it belong to dead processes."""
    with engine.begin() as connection:
        return connection.execute(
            text(
                "UPDATE kpi_aggregation_jobs SET status = 'abandoned', "
                "completed_at = coalesce(completed_at, now()), "
                "error = coalesce(error, 'abandoned: its process ended without finishing the job "
                "(found by the next run that took its lock)') "
                "WHERE status IN ('running', 'pending') AND job_type = ANY(:types)"
            ),
            {"types": list(lock.job_types)},
        ).rowcount
