"""Every data builder of the test suite: small, explicit functions that insert rows.

Each takes a SQLAlchemy connection (the caller owns the transaction) and returns the new row's
id, so a test reads as the data it sets up: `run = execution(conn, repo, "completed", at(10),
at(11))`. The bulk builders at the end insert many rows and return nothing.

A module's own hand-computed data set (the tables in the docstrings of test_kpi_sql.py or
test_hourly_parts.py, say) stays in that module, written with these builders; the AFU-9
stand-in schema is tests/afu9.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, text

from kpictl import kpis
from kpictl.db import schema


def at(hour: float = 0, *, day: date = date(2026, 1, 5)) -> datetime:
    """A UTC instant `hour` hours after midnight of `day` (default Monday 2026-01-05)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)


def _insert(conn: Connection, table, **values: Any):
    return conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()


def repository(
    conn: Connection, owner: str = "acme", name: str = "app", kpi_enabled: bool = True
) -> uuid.UUID:
    return _insert(conn, schema.repositories, owner=owner, name=name, kpi_enabled=kpi_enabled)


def execution(
    conn: Connection,
    repository_id: uuid.UUID | None,
    status: str,
    started_at: datetime | None,
    completed_at: datetime | None = None,
) -> uuid.UUID:
    return _insert(
        conn,
        schema.workflow_executions,
        repository_id=repository_id,
        status=status,
        started_at=started_at,
        completed_at=completed_at,
    )


def execution_literal(
    conn: Connection,
    repository_id: uuid.UUID | None,
    status: str,
    started_at: str,
    completed_at: str,
) -> None:
    """A run whose timestamps are PostgreSQL literals ('infinity', '-infinity' or ISO text),
    cast by the server: values a Python datetime cannot hold."""
    conn.execute(
        text(
            "INSERT INTO workflow_executions (repository_id, status, started_at, completed_at) "
            "VALUES (:repo, :status, CAST(:started AS timestamptz), CAST(:completed AS timestamptz))"
        ),
        {"repo": repository_id, "status": status, "started": started_at, "completed": completed_at},
    )


def agent_run(
    conn: Connection,
    execution_id: uuid.UUID,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    total_tokens: int | None = None,
) -> uuid.UUID:
    return _insert(
        conn,
        schema.agent_runs,
        execution_id=execution_id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
    )


def tool_call(conn: Connection, execution_id: uuid.UUID, error: str | None = None) -> uuid.UUID:
    return _insert(conn, schema.mcp_tool_calls, execution_id=execution_id, error=error)


def verdict(
    conn: Connection, execution_id: uuid.UUID | None, outcome: str, decided_at: datetime | None
) -> uuid.UUID:
    return _insert(
        conn,
        schema.verdict_outcomes,
        execution_id=execution_id,
        outcome=outcome,
        decided_at=decided_at,
    )


def tenant(conn: Connection, slug: str, name: str | None = None, **values: Any) -> uuid.UUID:
    return _insert(conn, schema.tenants, slug=slug, name=name or slug.title(), **values)


def avi_report(conn: Connection, tenant_id: uuid.UUID, as_of: date, **values: Any) -> int:
    return _insert(conn, schema.avi_reports, tenant_id=tenant_id, as_of=as_of, **values)


def vli_audit(
    conn: Connection, tenant_id: uuid.UUID, vdp_id: str, as_of: datetime, integrity_pct: Any
) -> int:
    return _insert(
        conn,
        schema.vdp_vli_audit,
        tenant_id=tenant_id,
        vdp_id=vdp_id,
        as_of=as_of,
        integrity_pct=integrity_pct,
    )


def history_rows(conn: Connection, tenant_id: uuid.UUID, rows: Iterable[Mapping[str, Any]]) -> None:
    """kpi_history rows of one tenant, as written by a fill (`rows`: column -> value)."""
    conn.execute(insert(schema.kpi_history), [{**row, "tenant_id": tenant_id} for row in rows])


# --- kpictl's own tables -----------------------------------------------------------------------


def snapshot(
    conn: Connection,
    kpi_name: str,
    value: Any,
    period_start: datetime,
    period_end: datetime,
    *,
    level: str = "factory",
    scope_id: uuid.UUID | None = None,
    unit: str | None = None,
    calculated_at: Any = None,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A kpi_snapshots row; `unit` defaults to the registry's, `calculated_at` (a datetime or a
    SQL expression) to the server's now()."""
    values: dict[str, Any] = {
        "kpi_name": kpi_name,
        "level": level,
        "scope_id": scope_id,
        "value": value,
        "unit": unit if unit is not None else kpis.BY_NAME[kpi_name].unit,
        "period_start": period_start,
        "period_end": period_end,
        "job_id": job_id,
    }
    if calculated_at is not None:
        values["calculated_at"] = calculated_at
    return _insert(conn, schema.kpi_snapshots, **values)


def snapshot_at(
    conn: Connection, level: str, calculated_at: datetime, kpi_name: str = "mtti"
) -> uuid.UUID:
    """A snapshot of `level` calculated at `calculated_at`, with a key of its own: a period of
    an hour somewhere after 2020-01-01 and, below factory level, a scope of its own (both drawn
    from a fresh uuid)."""
    start = datetime(2020, 1, 1) + timedelta(minutes=uuid.uuid4().int % 10_000_000)
    return snapshot(
        conn,
        kpi_name,
        1,
        start,
        start + timedelta(hours=1),
        level=level,
        scope_id=None if level == "factory" else uuid.uuid4(),
        unit="ms",
        calculated_at=calculated_at,
    )


def job(
    conn: Connection, job_type: str, status: str, started_at: datetime | None, **values: Any
) -> uuid.UUID:
    """A kpi_aggregation_jobs row; `created_at` defaults to `started_at` (to the server's now()
    when both are None)."""
    created_at = values.pop("created_at", started_at)
    if created_at is not None:
        values["created_at"] = created_at
    return _insert(
        conn,
        schema.kpi_aggregation_jobs,
        job_type=job_type,
        status=status,
        started_at=started_at,
        **values,
    )


# --- many rows at once -------------------------------------------------------------------------


def completed_runs(conn: Connection, n: int = 3) -> uuid.UUID:
    """A repository (acme/app) with `n` completed runs that ended an hour ago; its id."""
    now = datetime.now(UTC)
    repo = repository(conn)
    for i in range(n):
        execution(
            conn, repo, "completed", now - timedelta(hours=2, minutes=i), now - timedelta(hours=1)
        )
    return repo


def recent_runs(conn: Connection, n: int = 5) -> uuid.UUID:
    """A repository (acme/app) with `n` runs of an hour each, alternately failed and completed
    (the first failed), run i ending i + 2 hours ago with one agent run of 10 x i tokens."""
    now = datetime.now(UTC)
    repo = repository(conn, "acme", "app")
    for i in range(n):
        run = execution(
            conn,
            repo,
            "completed" if i % 2 else "failed",
            now - timedelta(hours=3 + i),
            now - timedelta(hours=2 + i),
        )
        agent_run(conn, run, total_tokens=10 * i)
    return repo


def reporting_tenants(conn: Connection, count: int = 3) -> list[uuid.UUID]:
    """Tenants tenant-0 .. tenant-<count-1>, each with one AVI report (week 2026-03-02, aiv_pct
    = its number)."""
    ids = []
    for index in range(count):
        tenant_id = tenant(conn, f"tenant-{index}")
        avi_report(conn, tenant_id, date(2026, 3, 2), aiv_pct=index)
        ids.append(tenant_id)
    return ids


def many_tenants(conn: Connection, count: int, *, weeks: int) -> None:
    """Tenants tenant-00001 .. (set-based), each with `weeks` weekly AVI reports from week
    2026-01-05 on (aiv 50, ati 60, crs 70)."""
    conn.execute(
        text(
            "INSERT INTO tenants (slug, name) "
            "SELECT 'tenant-' || lpad(g::text, 5, '0'), 'Tenant ' || g "
            "FROM generate_series(1, :count) g"
        ),
        {"count": count},
    )
    conn.execute(
        text(
            "INSERT INTO avi_reports (tenant_id, as_of, aiv_pct, ati_pct, crs_pct) "
            "SELECT t.id, DATE '2026-01-05' + 7 * w, 50, 60, 70 "
            "FROM tenants t CROSS JOIN generate_series(0, :weeks - 1) w"
        ),
        {"weeks": weeks},
    )
