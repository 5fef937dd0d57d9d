"""`kpictl jobs`: the rows of `kpi_aggregation_jobs`, newest first, and one job in full."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from sqlalchemy import Connection, GenerativeSelect, String, cast, func, select

from kpictl.db.schema import JOB_STATUSES, kpi_aggregation_jobs, kpi_snapshots
from kpictl.errors import CommandFailed, UsageError

LIST_COLUMNS = [
    "id",
    "job_type",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "snapshots_created",
    "error",
]
MAX_LIMIT = 1000

Query = TypeVar("Query", bound=GenerativeSelect)


def check_filters(limit: int, status: str | None, job_type: str | None) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"invalid --limit {limit}: use 1 to {MAX_LIMIT}")
    if status is not None and status not in JOB_STATUSES:
        raise UsageError(f"invalid --status {status!r} (use one of {', '.join(JOB_STATUSES)})")
    if job_type is not None and not job_type.strip():
        raise UsageError("invalid --type '': give a job type such as aggregate or backfill")


def newest_first(query: Query) -> Query:
    """Newest first: by start (creation for a job not started yet), then by creation."""
    jobs = kpi_aggregation_jobs
    return query.order_by(
        func.coalesce(jobs.c.started_at, jobs.c.created_at).desc(),
        jobs.c.created_at.desc(),
        jobs.c.id,
    )


def list_jobs(
    connection: Connection,
    *,
    limit: int = 10,
    status: str | None = None,
    job_type: str | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` job rows (the LIST_COLUMNS), newest first, optionally filtered."""
    check_filters(limit, status, job_type)
    jobs = kpi_aggregation_jobs
    query = select(*(jobs.c[name] for name in LIST_COLUMNS))
    if status is not None:
        query = query.where(jobs.c.status == status)
    if job_type is not None:
        query = query.where(jobs.c.job_type == job_type)
    rows = connection.execute(newest_first(query).limit(limit)).mappings()
    return [dict(row) for row in rows]


def parse_job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise UsageError(f"invalid job ID {value!r}: expected a UUID") from None


_ID_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]{0,35}")
MAX_CANDIDATES = 10


def parse_job_id_prefix(value: str) -> str:
    """A whole job id or the start of one, lower-cased (`59379dd5`, `59379DD5-1c2`); a
    UsageError for anything else, before any SQL."""
    prefix = value.strip().lower()
    if not _ID_PREFIX.fullmatch(prefix):
        raise UsageError(
            f"invalid job ID {value!r}: expected a UUID or its start (hex digits and dashes)"
        )
    return prefix


def resolve_job_id(connection: Connection, prefix: str) -> uuid.UUID:
    """The one job whose id starts with `prefix`; no such job is a CommandFailed (exit 1),
    several a UsageError listing them (exit 2)."""
    jobs = kpi_aggregation_jobs
    query = select(jobs.c.id).where(cast(jobs.c.id, String).startswith(prefix, autoescape=True))
    found = connection.execute(newest_first(query).limit(MAX_CANDIDATES + 1)).scalars().all()
    if not found:
        raise CommandFailed(f"no such job: {prefix}", hint="`kpictl jobs` lists recent jobs")
    if len(found) > 1:
        shown = ", ".join(str(job_id) for job_id in found[:MAX_CANDIDATES])
        more = " and more" if len(found) > MAX_CANDIDATES else ""
        raise UsageError(f"job ID {prefix!r} is ambiguous: {shown}{more}; give more of it")
    return uuid.UUID(str(found[0]))


def show_job(connection: Connection, job_id: uuid.UUID) -> dict[str, Any]:
    """Every column of one job, plus how many snapshots per level still carry its id."""
    jobs = kpi_aggregation_jobs
    row = connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise CommandFailed(f"no such job: {job_id}", hint="`kpictl jobs` lists recent jobs")
    counts = connection.execute(
        select(kpi_snapshots.c.level, func.count())
        .where(kpi_snapshots.c.job_id == job_id)
        .group_by(kpi_snapshots.c.level)
        .order_by(kpi_snapshots.c.level)
    ).all()
    job = dict(row)
    job["snapshots_by_level"] = {level: count for level, count in counts}
    return job
