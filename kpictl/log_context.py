"""What the log lines of a running job carry: its job ID, set by the job runner for the time the
job runs, read by the CLI's JSON log lines (`"job_id"`), so a log shipper can join a process's
lines to its row in `kpi_aggregation_jobs`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_job_id: ContextVar[str | None] = ContextVar("kpictl_job_id", default=None)


@contextmanager
def job_logged_as(job_id: object) -> Iterator[None]:
    token = current_job_id.set(str(job_id))
    try:
        yield
    finally:
        current_job_id.reset(token)
