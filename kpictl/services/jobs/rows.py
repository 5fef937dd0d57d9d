"""Job rows in `kpi_aggregation_jobs`: every aggregate, backfill, retention and history fill
writes one row through its whole life (running -> completed / failed / cancelled).

The row is written on its own short transaction (the caller passes the engine), so that it
survives the rollback of the work it describes.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from kpictl import __version__
from kpictl.db.schema import kpi_aggregation_jobs as jobs
from kpictl.redact import mask_argv


def job_metadata(
    argv: list[str] | tuple[str, ...] = (), secrets: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """host, pid, kpictl version and the command line with secrets masked."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "version": __version__,
        "argv": mask_argv(list(argv), secrets),
    }


def start_job(
    engine: Engine,
    job_type: str,
    *,
    kpi_names: list[str] | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> uuid.UUID:
    with engine.begin() as conn:
        return conn.execute(
            insert(jobs)
            .values(
                job_type=job_type,
                status="running",
                kpi_names=kpi_names,
                period_start=period_start,
                period_end=period_end,
                started_at=func.now(),
                metadata=metadata or {},
            )
            .returning(jobs.c.id)
        ).scalar_one()


def finish_job(
    engine: Engine,
    job_id: uuid.UUID,
    status: str,
    *,
    snapshots_created: int = 0,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Close the job; `metadata` is merged into what the row already holds."""
    if status not in ("completed", "failed", "cancelled"):
        raise ValueError(f"a job ends completed, failed or cancelled, not {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "completed_at": func.now(),
        "duration_ms": func.round(func.extract("epoch", func.now() - jobs.c.started_at) * 1000),
        "snapshots_created": snapshots_created,
        "error": error,
    }
    if metadata:
        values["metadata"] = func.coalesce(jobs.c.metadata, literal({}, JSONB)).op("||")(
            literal(metadata, JSONB)
        )
    with engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


def get_job(engine: Engine, job_id: uuid.UUID) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return dict(row) if row else None


def last_completed_aggregate_scan(connection: Connection, key: str) -> dict[str, Any] | None:
    """`metadata[key]` of the newest completed aggregate job that recorded one: what the
    previous cycle scanned (`run_scan`, `parts_scan`), where the next one starts."""
    return connection.execute(
        text(
            "SELECT metadata->:key FROM kpi_aggregation_jobs "
            "WHERE job_type = 'aggregate' AND status = 'completed' AND metadata ? :key "
            "ORDER BY started_at DESC LIMIT 1"
        ),
        {"key": key},
    ).scalar()
