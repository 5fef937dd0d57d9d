"""The steps that bring AFU-9's `kpi_snapshots` and `kpi_aggregation_jobs` to kpictl's shape
(timestamps to timestamptz, duplicates removed, kpictl's constraints and indexes, the old
scheduler's jobs abandoned). kpictl's own tables and the adoption's record: `finish.py`.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, Index, TextClause, text
from sqlalchemy.schema import (
    AddConstraint,
    ColumnCollectionConstraint,
    CreateIndex,
    DefaultClause,
)

from kpictl.db import schema
from kpictl.services.adoption.steps import (
    ABANDONED_ERROR,
    DIALECT,
    AdoptionPlan,
    Step,
    quoted_identifier,
    scalar,
    sql_literal,
)
from kpictl.services.jobs.rows import abandon_statement


def _timestamp_changes(columns: dict[str, dict[str, Any]], zone: str) -> list[str]:
    return [
        f"ALTER COLUMN {name} TYPE timestamptz USING {name} AT TIME ZONE {sql_literal(zone)}"
        for name in sorted(columns)
        if columns[name]["type"] == "timestamp without time zone"
    ]


def _default_changes(table: str, columns: dict[str, dict[str, Any]]) -> list[str]:
    changes = []
    for column in schema.metadata.tables[table].columns:
        default = column.server_default
        if default is None or column.name not in columns:
            continue
        # the server defaults of kpi_snapshots and kpi_aggregation_jobs are all text(...)
        assert isinstance(default, DefaultClause) and isinstance(default.arg, TextClause)
        wanted = default.arg.text
        actual = re.sub(r"::[a-z ]+(\(\d+\))?$", "", columns[column.name]["default"] or "")
        if actual != wanted:
            changes.append(f"ALTER COLUMN {column.name} SET DEFAULT {wanted}")
    return changes


def _nullability_changes(table: str, columns: dict[str, dict[str, Any]]) -> list[str]:
    changes = []
    for column in schema.metadata.tables[table].columns:
        if column.name in columns and column.nullable and columns[column.name]["not_null"]:
            changes.append(f"ALTER COLUMN {column.name} DROP NOT NULL")
        elif (
            column.name in columns and not column.nullable and not columns[column.name]["not_null"]
        ):
            changes.append(f"ALTER COLUMN {column.name} SET NOT NULL")
    return changes


def _constraint_changes(
    connection: Connection, table: str, column: str
) -> tuple[list[str], list[str]]:
    """(statements dropping AFU-9's CHECK on `column` and a differently named primary key,
    statements adding kpictl's constraints that are missing)."""
    existing = connection.execute(
        text(
            "SELECT c.conname, c.contype, "
            "EXISTS (SELECT 1 FROM unnest(c.conkey) k JOIN pg_attribute a "
            "  ON a.attrelid = c.conrelid AND a.attnum = k WHERE a.attname = :column) AS on_column "
            "FROM pg_constraint c WHERE c.conrelid = CAST(:table AS regclass)"
        ),
        {"table": table, "column": column},
    ).all()
    names = {row.conname for row in existing}
    drops, adds = [], []
    for row in existing:
        if row.contype == "c" and row.on_column and not row.conname.startswith("ck_"):
            drops.append(
                f"ALTER TABLE {table} DROP CONSTRAINT {quoted_identifier(connection, row.conname)}"
            )
        if row.contype == "p" and row.conname != f"pk_{table}":
            drops.append(
                f"ALTER TABLE {table} RENAME CONSTRAINT {quoted_identifier(connection, row.conname)} "
                f"TO pk_{table}"
            )
            names.add(f"pk_{table}")
    for constraint in schema.metadata.tables[table].constraints:
        if constraint.name not in names:
            adds.append(str(AddConstraint(constraint).compile(dialect=DIALECT)))
    return drops, adds


def index_name(index: Index) -> str:
    """The name of one of kpictl's indexes: each has one (kpictl/db/schema.py)."""
    assert index.name is not None
    return index.name


def _index_changes(connection: Connection, table: str) -> tuple[list[str], list[str], list[str]]:
    """(CREATE for kpictl's missing indexes, DROP for AFU-9 indexes made redundant by them,
    names of the dropped ones). Redundant: plain ascending btree columns that are a leading
    prefix of one of kpictl's indexes or of its unique key."""
    own = schema.metadata.tables[table]
    keys = [[c.name for c in index.columns] for index in own.indexes]
    keys += [
        [c.name for c in uq.columns]
        for uq in own.constraints
        if isinstance(uq, ColumnCollectionConstraint)
        and isinstance(uq.name, str)
        and uq.name.startswith("uq_")
    ]
    rows = connection.execute(
        text(
            "SELECT quote_ident(ic.relname) AS quoted, ic.relname AS name, "
            "ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
            "      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "      ORDER BY k.n) AS columns, "
            "(i.indexprs IS NULL AND i.indpred IS NULL AND NOT i.indisunique "
            " AND am.amname = 'btree' AND 0 = ALL (i.indoption::int2[])) AS plain, "
            "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) AS backs_constraint "
            "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = ic.relam "
            "WHERE i.indrelid = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).all()
    present = {row.name for row in rows}
    creates = [
        str(CreateIndex(index).compile(dialect=DIALECT))
        for index in sorted(own.indexes, key=index_name)
        if index.name not in present
    ]
    drops, dropped = [], []
    own_names = {index.name for index in own.indexes}
    for row in sorted(rows, key=lambda row: row.name):
        if row.name in own_names or row.backs_constraint or not row.plain:
            continue
        if any(key[: len(row.columns)] == list(row.columns) for key in keys):
            drops.append(f"DROP INDEX {row.quoted}")
            dropped.append(row.name)
    return creates, drops, dropped


def snapshot_step(
    connection: Connection, plan: AdoptionPlan, columns: dict[str, dict[str, Any]], zone: str
) -> Step:
    step = Step("kpi_snapshots", "")
    changes = _timestamp_changes(columns, zone)
    converted = [
        name for name in sorted(columns) if columns[name]["type"].startswith("timestamp without")
    ]
    if columns["value"]["type"] != "numeric":
        changes.append("ALTER COLUMN value TYPE numeric")
    if "job_id" not in columns:
        changes.append("ADD COLUMN job_id uuid")
    drops, adds = _constraint_changes(connection, "kpi_snapshots", "level")
    for statement in drops:
        step.add(statement)
    if changes:
        step.add("ALTER TABLE kpi_snapshots " + ", ".join(changes))
    missing_created = scalar(
        connection, "SELECT count(*) FROM kpi_snapshots WHERE created_at IS NULL"
    )
    if missing_created:
        step.add("UPDATE kpi_snapshots SET created_at = calculated_at WHERE created_at IS NULL")
    # Duplicates on kpictl's key, NULL scope included; counted on the converted instants.
    key = ["level", "kpi_name", "kpi_version", "scope_id"] + [
        f"{name} AT TIME ZONE CAST(:zone AS text)" if name in converted else name
        for name in ("period_start", "period_end")
    ]
    by_level = connection.execute(
        text(
            "SELECT level, count(*) FROM (SELECT level, row_number() OVER (PARTITION BY "
            + ", ".join(key)
            + ") AS copy FROM kpi_snapshots) ranked WHERE copy > 1 GROUP BY level ORDER BY level"
        ),
        {"zone": zone},
    ).all()
    plan.duplicates_by_level = {level: count for level, count in by_level}
    plan.duplicates = sum(plan.duplicates_by_level.values())
    if plan.duplicates:
        step.add(
            "DELETE FROM kpi_snapshots k USING (SELECT id, row_number() OVER ("
            "PARTITION BY level, kpi_name, kpi_version, scope_id, period_start, period_end "
            "ORDER BY calculated_at DESC, created_at DESC NULLS LAST, id DESC) AS copy "
            "FROM kpi_snapshots) ranked WHERE k.id = ranked.id AND ranked.copy > 1"
        )
    rest = _default_changes("kpi_snapshots", columns) + _nullability_changes(
        "kpi_snapshots", columns
    )
    if rest:
        step.add("ALTER TABLE kpi_snapshots " + ", ".join(rest))
    for statement in adds:
        step.add(statement)
    creates, index_drops, dropped = _index_changes(connection, "kpi_snapshots")
    for statement in creates + index_drops:
        step.add(statement)
    parts = []
    if converted:
        parts.append(f"{', '.join(converted)} to timestamptz (stored values read as {zone})")
    if columns["value"]["type"] != "numeric":
        parts.append(f"value {columns['value']['type']} to numeric")
    if "job_id" not in columns:
        parts.append("add job_id")
    if missing_created:
        parts.append(f"created_at of {missing_created} rows set from calculated_at")
    levels = ", ".join(f"{count} {level}" for level, count in plan.duplicates_by_level.items())
    parts.append(
        f"remove {plan.duplicates} exact duplicate snapshots on kpictl's key, newest "
        f"calculated_at kept ({levels or 'none'}); keep {plan.snapshots_kept} of "
        f"{plan.snapshots} rows"
    )
    parts.append("add kpictl's CHECK, unique key uq_kpi_snapshots_key and indexes")
    if dropped:
        parts.append(f"drop redundant {', '.join(dropped)}")
    step.summary = "kpi_snapshots: " + "; ".join(parts)
    return step


def jobs_step(
    connection: Connection, plan: AdoptionPlan, columns: dict[str, dict[str, Any]], zone: str
) -> Step:
    step = Step("kpi_aggregation_jobs", "")
    drops, adds = _constraint_changes(connection, "kpi_aggregation_jobs", "status")
    for statement in drops:
        step.add(statement)
    changes = _timestamp_changes(columns, zone)
    changes += [c for c in _nullability_changes("kpi_aggregation_jobs", columns) if "DROP" in c]
    changes += _default_changes("kpi_aggregation_jobs", columns)
    if changes:
        step.add("ALTER TABLE kpi_aggregation_jobs " + ", ".join(changes))
    counts = connection.execute(
        text(
            "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, "
            "count(*) FILTER (WHERE status = 'running') AS running, "
            "count(*) FILTER (WHERE snapshots_created IS NULL) AS no_count, "
            "count(*) FILTER (WHERE created_at IS NULL) AS no_created FROM kpi_aggregation_jobs"
        )
    ).one()
    plan.jobs_abandoned = counts.pending + counts.running
    for status in ("pending", "running"):
        if getattr(counts, status):
            step.add(*abandon_statement(ABANDONED_ERROR.format(status=status), status=status))
    if counts.no_count:
        step.add(
            "UPDATE kpi_aggregation_jobs SET snapshots_created = 0 WHERE snapshots_created IS NULL"
        )
    if counts.no_created:
        step.add(
            "UPDATE kpi_aggregation_jobs SET created_at = coalesce(started_at, period_start, now()) "
            "WHERE created_at IS NULL"
        )
    not_null = [c for c in _nullability_changes("kpi_aggregation_jobs", columns) if "SET" in c]
    if not_null:
        step.add("ALTER TABLE kpi_aggregation_jobs " + ", ".join(not_null))
    for statement in adds:
        step.add(statement)
    creates, index_drops, dropped = _index_changes(connection, "kpi_aggregation_jobs")
    for statement in creates + index_drops:
        step.add(statement)
    converted = [c for c in sorted(columns) if columns[c]["type"] == "timestamp without time zone"]
    parts = []
    if converted:
        parts.append(f"{', '.join(converted)} to timestamptz")
    parts.append(
        f"mark {plan.jobs_abandoned} pending/running jobs of the old scheduler abandoned "
        f"({counts.pending} pending, {counts.running} running)"
    )
    parts.append("status CHECK admits kpictl's statuses; kpictl's defaults, NOT NULLs and indexes")
    if dropped:
        parts.append(f"drop redundant {', '.join(dropped)}")
    step.summary = "kpi_aggregation_jobs: " + "; ".join(parts)
    return step
