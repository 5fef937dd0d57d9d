"""The pipeline lock: one aggregate or backfill at a time across all hosts.

A session-level PostgreSQL advisory lock on a stable key, held on a dedicated connection of its
own (autocommit, never returned to a pool) for the whole run. If the process dies, PostgreSQL
drops the connection and with it the lock; the job row it left `running` is marked `abandoned`
by the next run that takes the lock.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from kpictl.errors import LockHeld

# pg_try_advisory_lock(bigint) key shared by every kpictl host: "kpictl" in ASCII.
PIPELINE_LOCK_KEY = 0x6B7069_63746C
PIPELINE_JOB_TYPES = ("aggregate", "backfill")
POLL_SECONDS = 0.5


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


def lock_holder(connection: Connection) -> LockHolder | None:
    """Who holds the pipeline lock right now (None when free)."""
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
        {"high": PIPELINE_LOCK_KEY >> 32, "low": PIPELINE_LOCK_KEY & 0xFFFFFFFF},
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
def pipeline_lock(
    engine: Engine,
    *,
    wait_seconds: float | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[HeldLock]:
    """Hold the pipeline lock for the block. `wait_seconds`: None = fail at once (LockHeld),
    a number = poll that long, math.inf = wait for ever."""
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        connection.execute(
            text("SELECT set_config('application_name', :name, false)"),
            {"name": f"kpictl lock {socket.gethostname()}:{os.getpid()}"[:63]},
        )
        deadline = time.monotonic() + (wait_seconds or 0)
        while not _try_lock(connection):
            if wait_seconds is None or time.monotonic() >= deadline or should_stop():
                holder = lock_holder(connection)
                described = holder.describe() if holder else "another session (just released?)"
                waited = "" if wait_seconds is None else f" after waiting {_seconds(wait_seconds)}"
                raise LockHeld(
                    f"another pipeline run holds the lock{waited}: {described}",
                    hint="it will be retried by the next timer run; use --wait to wait for it",
                )
            time.sleep(POLL_SECONDS)
        backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        try:
            yield HeldLock(connection, backend_pid)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PIPELINE_LOCK_KEY})
    finally:
        connection.close()


def _try_lock(connection: Connection) -> bool:
    return bool(
        connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": PIPELINE_LOCK_KEY}
        ).scalar_one()
    )


def _seconds(value: float) -> str:
    return "indefinitely" if math.isinf(value) else f"{value:g}s"


def mark_abandoned(engine: Engine) -> int:
    """Pipeline jobs still `running` while we hold the lock belong to dead processes."""
    with engine.begin() as connection:
        return connection.execute(
            text(
                "UPDATE kpi_aggregation_jobs SET status = 'abandoned', "
                "completed_at = coalesce(completed_at, now()), "
                "error = coalesce(error, 'abandoned: its process ended without finishing the job "
                "(found by the next run that took the pipeline lock)') "
                "WHERE status IN ('running', 'pending') AND job_type = ANY(:types)"
            ),
            {"types": list(PIPELINE_JOB_TYPES)},
        ).rowcount
