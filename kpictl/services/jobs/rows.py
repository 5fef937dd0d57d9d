"""Job rows in `kpi_aggregation_jobs`, written here only: every aggregate, backfill, retention
and history fill writes one row through its whole life (running -> completed / failed /
cancelled, `jobs/runner.py`); a row left `running` or `pending` by a process that is gone is
marked `abandoned` (`abandon_jobs`: by the next holder of its lock, `jobs/lock.py`, and by the
adoption of an AFU-9 database for its old scheduler's rows); the adoption records itself as one
row written inside its own transaction (`finished_job_statement`).

The runner's rows are written on short transactions of their own (the caller passes the
engine), so that they survive the rollback of the work they describe.
"""

from __future__ import annotations

import json
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
        job_id: uuid.UUID = conn.execute(
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
        return job_id


def finish_job(
    engine: Engine,
    job_id: uuid.UUID,
    status: str,
    *,
    snapshots_created: int = 0,
    error: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int | None:
    """Close the job; `metadata` is merged into what the row already holds. Returns the row's
    `duration_ms` (the database's clock: the one number every output shows for the job)."""
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
    statement = update(jobs).where(jobs.c.id == job_id).values(**values)
    with engine.begin() as conn:
        duration = conn.execute(statement.returning(jobs.c.duration_ms)).scalar()
    return None if duration is None else int(duration)


# A job row nobody will finish once its process is gone: kpictl writes `running`; the AFU-9
# scheduler also left `pending` rows.
UNFINISHED_STATUSES = ("running", "pending")


def abandon_statement(
    error: str, *, status: str | None = None, job_types: tuple[str, ...] | None = None
) -> tuple[str, dict[str, Any]]:
    """The one statement (SQL, bound values) that marks job rows `abandoned`: those `status`
    (default: every unfinished status) of `job_types` (default: any type), their completed_at
    (now) and `error` kept when they have one. Adoption prints it in `migrate --adopt --sql`."""
    if status is not None and status not in UNFINISHED_STATUSES:
        raise ValueError(f"only an unfinished job is abandoned, not a {status!r} one")
    conditions = ["status = :status" if status else "status IN ('running', 'pending')"]
    values: dict[str, Any] = {"error": error}
    if status:
        values["status"] = status
    if job_types is not None:
        conditions.append("job_type = ANY(:job_types)")
        values["job_types"] = list(job_types)
    sql = (
        "UPDATE kpi_aggregation_jobs SET status = 'abandoned', "
        "completed_at = coalesce(completed_at, now()), error = coalesce(error, :error) "
        "WHERE " + " AND ".join(conditions)
    )
    return sql, values


def abandon_jobs(
    connection: Connection, error: str, *, job_types: tuple[str, ...] | None = None
) -> int:
    """Mark the unfinished job rows of `job_types` `abandoned` (see `abandon_statement`), in the
    caller's transaction; returns how many."""
    sql, values = abandon_statement(error, job_types=job_types)
    return connection.execute(text(sql), values).rowcount


def finished_job_statement(
    job_id: uuid.UUID, job_type: str, metadata: dict[str, Any], *, snapshots_created: int = 0
) -> tuple[str, dict[str, Any]]:
    """(SQL, bound values) of a job row written `completed` at once, inside the transaction of
    the work it records (which then commits or rolls back with it): the adoption's row, which
    cannot exist before the adoption, as the table is not kpictl's yet. started_at is the
    transaction's start, completed_at and duration_ms the moment of the INSERT."""
    sql = (
        "INSERT INTO kpi_aggregation_jobs (id, job_type, status, started_at, completed_at, "
        "duration_ms, snapshots_created, metadata) VALUES (CAST(:job_id AS uuid), :job_type, "
        "'completed', now(), clock_timestamp(), "
        "round(extract(epoch FROM clock_timestamp() - now()) * 1000), :snapshots_created, "
        "CAST(:metadata AS jsonb))"
    )
    return sql, {
        "job_id": str(job_id),
        "job_type": job_type,
        "snapshots_created": snapshots_created,
        "metadata": json.dumps(metadata, default=str, sort_keys=True),
    }


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
