"""Small, explicit builders for source rows; later test suites reuse them.

Each takes a SQLAlchemy connection and returns the new row's id, so a test reads as the data it
sets up: `run = execution(conn, repo, "completed", at(10), at(11))`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert

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


def tenant(conn: Connection, slug: str, name: str | None = None) -> uuid.UUID:
    return _insert(conn, schema.tenants, slug=slug, name=name or slug.title())


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
