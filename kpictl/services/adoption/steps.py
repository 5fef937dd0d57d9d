"""The model of an adoption (docs/spec/adoption.md): its steps of SQL statements, the plan they form, the
result, and the constants and catalog helpers every step shares.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql

from kpictl.db import kpi_views

ADOPTED_REVISION = "0002"  # adoption produces the state of 0001 + 0002

MARKER_TABLE = "kpictl_adoption"

KPI_TABLES = ("kpi_snapshots", "kpi_aggregation_jobs")

MATERIALIZED_VIEWS = kpi_views.MATERIALIZED_VIEWS

LOCK = "LOCK TABLE kpi_snapshots, kpi_aggregation_jobs IN ACCESS EXCLUSIVE MODE"

ABANDONED_ERROR = (
    "abandoned: left {status} by the AFU-9 scheduler; marked when kpictl adopted this database"
)

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy: unannotated


@dataclass(frozen=True)
class Statement:
    sql: str
    params: dict[str, Any] | None = None

    def render(self) -> str:
        if not self.params:
            return self.sql.strip()
        clause = text(self.sql).bindparams(**self.params)
        return str(clause.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}))


@dataclass
class Step:
    name: str  # also the key of the test hook `fail_after`
    summary: str  # one plain line for the operator
    statements: list[Statement] = field(default_factory=list)

    def add(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.statements.append(Statement(sql, params))


@dataclass
class AdoptionPlan:
    steps: list[Step]
    snapshots: int
    duplicates: int
    duplicates_by_level: dict[str, int]
    jobs_abandoned: int
    views: list[str]
    source_timezone: str
    job_id: uuid.UUID

    @property
    def snapshots_kept(self) -> int:
        return self.snapshots - self.duplicates

    def describe(self) -> list[str]:
        lines = [step.summary for step in self.steps if step.summary]
        lines.append(
            "after the commit: build the kpictl_* indexes on the source tables CONCURRENTLY, "
            f"then upgrade {ADOPTED_REVISION} -> head"
        )
        return lines

    def sql(self) -> str:
        out = [
            "-- kpictl: adoption of an AFU-9 database (docs/OPERATIONS.md). Back up first.",
            "BEGIN;",
        ]
        for step in self.steps:
            out.append(f"\n-- [{step.name}] {step.summary}")
            out.extend(f"{statement.render()};" for statement in step.statements)
        out.append("\nCOMMIT;")
        return "\n".join(out) + "\n"


@dataclass
class AdoptionResult:
    adopted: bool
    reason: str  # why nothing was done, when not adopted
    duplicates_removed: int = 0
    duplicates_by_level: dict[str, int] = field(default_factory=dict)
    snapshots_kept: int = 0
    jobs_abandoned: int = 0
    views_recreated: list[str] = field(default_factory=list)
    job_id: str | None = None
    summary: list[str] = field(default_factory=list)


def relation_exists(connection: Connection, name: str) -> bool:
    return bool(
        connection.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()
    )


def sql_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings); used only for checked values."""
    return "'" + value.replace("'", "''") + "'"


def table_columns(connection: Connection, table: str) -> dict[str, dict[str, Any]]:
    rows = connection.execute(
        text(
            "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
            "a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d "
            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"table": table},
    ).mappings()
    return {row["name"]: dict(row) for row in rows}


def scalar(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


def quoted_identifier(connection: Connection, name: str) -> str:
    return str(connection.execute(text("SELECT quote_ident(:name)"), {"name": name}).scalar_one())
