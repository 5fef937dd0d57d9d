"""How each kind of job has been doing, from the job rows kept (`kpi_aggregation_jobs`): when
it last completed, how long that run took, and how many runs failed. One grouped query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from kpictl.db.schema import kpi_aggregation_jobs


@dataclass(frozen=True)
class JobHealth:
    job_type: str
    last_success_at: datetime | None  # completed_at of the newest completed run
    last_duration_ms: int | None  # its duration_ms
    failures: int  # failed runs among the rows kept (retention deletes old ones)


def job_health(connection: Connection) -> list[JobHealth]:
    """Per job type, by name."""
    jobs = kpi_aggregation_jobs
    completed = jobs.c.status == "completed"
    newest_duration = func.array_agg(
        aggregate_order_by(jobs.c.duration_ms, jobs.c.completed_at.desc())
    ).filter(completed)[1]
    statement = (
        select(
            jobs.c.job_type,
            func.max(jobs.c.completed_at).filter(completed).label("last_success_at"),
            newest_duration.label("last_duration_ms"),
            func.count().filter(jobs.c.status == "failed").label("failures"),
        )
        .group_by(jobs.c.job_type)
        .order_by(jobs.c.job_type)
    )
    return [
        JobHealth(
            row.job_type,
            row.last_success_at,
            None if row.last_duration_ms is None else int(row.last_duration_ms),
            int(row.failures),
        )
        for row in connection.execute(statement)
    ]
