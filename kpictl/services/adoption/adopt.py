"""Adopting a live AFU-9 database in place (adoption.md).

The AFU-9 control center created `kpi_snapshots` and `kpi_aggregation_jobs` (with the names
kpictl uses, in an older shape), two materialized views, four functions and a run trigger, and
reads them from its own views. Adoption turns these objects into the shape kpictl's revisions
0001 and 0002 would have created, in ONE transaction, and stamps the version table at 0002; the
normal upgrade then runs the later revisions. Nothing is dropped that holds data: rows are kept,
except exact duplicates on kpictl's uniqueness key (the newest `calculated_at` survives).

The work is a plan of SQL statements built from the live catalog (`build_plan`): the same list
is printed by `migrate --adopt --sql` and executed by `migrate --adopt`, so what a DBA reviews is
what runs. Two things cannot run inside the transaction and follow its commit: the `kpictl_*`
source indexes of 0002 (built CONCURRENTLY, like 0002 does; `ensure_source_indexes`) and the
later revisions. Both converge when re-run, and `kpictl migrate` re-checks the indexes.

Identifiers in the generated DDL are quoted by the server (`format('%I')`, `quote_literal`);
the only value written into DDL from outside, the source time zone, is first checked against
`pg_timezone_names`. Values of the rows written (job row, marker) are bound parameters.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint, CreateIndex, CreateTable

from kpictl.db import schema
from kpictl.errors import CommandFailed, UsageError
from kpictl.services.adoption import functions as adopt_functions

log = logging.getLogger(__name__)

ADOPTED_REVISION = "0002"  # adoption produces the state of 0001 + 0002
MARKER_TABLE = "kpictl_adoption"
KPI_TABLES = ("kpi_snapshots", "kpi_aggregation_jobs")
MATERIALIZED_VIEWS = ("mv_factory_kpis_24h", "mv_product_kpis_7d")
LOCK = "LOCK TABLE kpi_snapshots, kpi_aggregation_jobs IN ACCESS EXCLUSIVE MODE"
ABANDONED_ERROR = (
    "abandoned: left {status} by the AFU-9 scheduler; marked when kpictl adopted this database"
)
_DIALECT = postgresql.dialect()


@dataclass(frozen=True)
class Statement:
    sql: str
    params: dict[str, Any] | None = None

    def render(self) -> str:
        if not self.params:
            return self.sql.strip()
        clause = text(self.sql).bindparams(**self.params)
        return str(clause.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))


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


# --- detection ---------------------------------------------------------------------------------


def _exists(connection: Connection, name: str) -> bool:
    return connection.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}
    ).scalar()


def is_adopted(connection: Connection) -> bool:
    """Was this database adopted from AFU-9 (the marker table exists)?"""
    return _exists(connection, MARKER_TABLE)


def needs_adoption(connection: Connection) -> bool:
    """AFU-9's KPI tables are here and kpictl's version table names no revision."""
    from kpictl.services.schema.migrate import current_revision

    return _exists(connection, "kpi_snapshots") and current_revision(connection) is None


def pending_adoption(connection: Connection, source_timezone: str = "UTC") -> list[str] | None:
    """What `migrate --adopt` would do here, or None when there is nothing to adopt."""
    if not needs_adoption(connection):
        return None
    return build_plan(connection, source_timezone, {}).describe()


def adoption_required_error(lines: list[str]) -> CommandFailed:
    listed = "\n".join(f"  - {line}" for line in lines)
    return CommandFailed(
        "AFU-9 tables found, not adopted: this database holds the AFU-9 control center's KPI "
        "tables and no kpictl revision. `kpictl migrate --adopt` would, in one transaction:\n"
        + listed,
        hint="back up first (docs/OPERATIONS.md, 'Adopting an AFU-9 database'), review "
        "`kpictl migrate --adopt --sql`, then run `kpictl migrate --adopt`",
    )


def refuse_downgrade(connection: Connection, revision: str) -> None:
    """Adoption is a one-way data migration: no downgrade below its revision."""
    if not is_adopted(connection):
        return
    from alembic.script import ScriptDirectory

    from kpictl.services.schema.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    below = {rev.revision for rev in script.iterate_revisions(ADOPTED_REVISION, "base")}
    below = (below - {ADOPTED_REVISION}) | {"base"}
    if revision not in below:
        return
    adopted_at = connection.execute(
        text(f"SELECT min(adopted_at) FROM {MARKER_TABLE}")  # constant name
    ).scalar()
    when = f" on {adopted_at:%Y-%m-%d %H:%M} UTC" if adopted_at else ""
    raise CommandFailed(
        f"refusing to downgrade to {revision}: this database was adopted from AFU-9{when} "
        f"(revision {ADOPTED_REVISION}); going below it would drop the platform's KPI data and "
        "break its views, functions and trigger. Adoption is a one-way data migration.",
        hint="to undo an adoption, restore the backup taken before it (docs/OPERATIONS.md)",
    )


# --- the plan -----------------------------------------------------------------------------------


def _check_timezone(connection: Connection, zone: str) -> str:
    found = connection.execute(
        text("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = :zone)"), {"zone": zone}
    ).scalar()
    if not found and zone.upper() != "UTC":
        raise UsageError(f"unknown time zone for KPICTL_SOURCE_TIMEZONE: {zone!r}")
    return zone


def _quote(value: str) -> str:
    """A SQL string literal (standard_conforming_strings); used only for checked values."""
    return "'" + value.replace("'", "''") + "'"


def _columns(connection: Connection, table: str) -> dict[str, dict[str, Any]]:
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


def _scalar(connection: Connection, sql: str, **params: Any) -> Any:
    return connection.execute(text(sql), params).scalar()


def build_plan(
    connection: Connection, source_timezone: str, metadata: dict[str, Any]
) -> AdoptionPlan:
    """Read the live catalog (inside the adoption's transaction, after its lock) and return the
    statements that bring it to kpictl's revision 0002, each step with a plain summary."""
    zone = _check_timezone(connection, source_timezone)
    for table in KPI_TABLES:
        if not _exists(connection, table):
            raise CommandFailed(
                f"cannot adopt: {table} is missing (AFU-9 databases have both {' and '.join(KPI_TABLES)})"
            )
    columns = {table: _columns(connection, table) for table in KPI_TABLES}
    for table in KPI_TABLES:
        expected = [c.name for c in schema.metadata.tables[table].columns if c.name != "job_id"]
        missing = [name for name in expected if name not in columns[table]]
        if missing:
            raise CommandFailed(
                f"cannot adopt: {table} has no column {', '.join(missing)}; this is not the AFU-9 "
                "shape kpictl knows. Nothing was changed."
            )
    views = _dependent_views(connection)
    plan = AdoptionPlan(
        steps=[],
        snapshots=_scalar(connection, "SELECT count(*) FROM kpi_snapshots"),
        duplicates=0,
        duplicates_by_level={},
        jobs_abandoned=0,
        views=[view["name"] for view in views],
        source_timezone=zone,
        job_id=uuid.uuid4(),
    )
    plan.steps.append(
        Step(
            "lock",
            "lock kpi_snapshots and kpi_aggregation_jobs (the platform's run updates wait for "
            "the commit)",
            [Statement(LOCK)],
        )
    )
    drop = Step("drop-views", "")
    for view in reversed(views):
        drop.add(f"DROP VIEW {view['name']}")
    if views:
        drop.summary = (
            f"drop the {len(views)} dependent views (recreated below): {', '.join(plan.views)}"
        )
        plan.steps.append(drop)
    old_views = _materialized_views(connection)
    replace = Step(
        "drop-materialized-views",
        "drop AFU-9's materialized views (replaced below)" if old_views else "",
    )
    for view in old_views:
        replace.add(f"DROP MATERIALIZED VIEW {view['name']}")
    if old_views:
        plan.steps.append(replace)
    plan.steps.append(_snapshot_step(connection, plan, columns["kpi_snapshots"], zone))
    plan.steps.append(_jobs_step(connection, plan, columns["kpi_aggregation_jobs"], zone))
    plan.steps.append(_materialized_view_step(old_views))
    if views:
        plan.steps.append(_recreate_views_step(views))
    functions, check = _functions_steps(connection, zone)
    if functions.statements:
        plan.steps.append(functions)
    tables = _own_tables_step(connection)
    if tables.statements:
        plan.steps.append(tables)
    plan.steps.append(_record_step(plan, metadata))
    plan.steps.append(check)
    return plan


def _timestamp_changes(columns: dict[str, dict[str, Any]], zone: str) -> list[str]:
    return [
        f"ALTER COLUMN {name} TYPE timestamptz USING {name} AT TIME ZONE {_quote(zone)}"
        for name in sorted(columns)
        if columns[name]["type"] == "timestamp without time zone"
    ]


def _default_changes(table: str, columns: dict[str, dict[str, Any]]) -> list[str]:
    changes = []
    for column in schema.metadata.tables[table].columns:
        if column.server_default is None or column.name not in columns:
            continue
        wanted = column.server_default.arg.text
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
            drops.append(f"ALTER TABLE {table} DROP CONSTRAINT {_ident(connection, row.conname)}")
        if row.contype == "p" and row.conname != f"pk_{table}":
            drops.append(
                f"ALTER TABLE {table} RENAME CONSTRAINT {_ident(connection, row.conname)} "
                f"TO pk_{table}"
            )
            names.add(f"pk_{table}")
    for constraint in schema.metadata.tables[table].constraints:
        if constraint.name not in names:
            adds.append(str(AddConstraint(constraint).compile(dialect=_DIALECT)))
    return drops, adds


def _ident(connection: Connection, name: str) -> str:
    return connection.execute(text("SELECT quote_ident(:name)"), {"name": name}).scalar()


def _index_changes(connection: Connection, table: str) -> tuple[list[str], list[str], list[str]]:
    """(CREATE for kpictl's missing indexes, DROP for AFU-9 indexes made redundant by them,
    names of the dropped ones). Redundant: plain ascending btree columns that are a leading
    prefix of one of kpictl's indexes or of its unique key."""
    own = schema.metadata.tables[table]
    keys = [[c.name for c in index.columns] for index in own.indexes]
    keys += [[c.name for c in uq.columns] for uq in own.constraints if uq.name.startswith("uq_")]
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
        str(CreateIndex(index).compile(dialect=_DIALECT))
        for index in sorted(own.indexes, key=lambda index: index.name)
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


def _snapshot_step(
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
    missing_created = _scalar(
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


def _jobs_step(
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
            step.add(
                "UPDATE kpi_aggregation_jobs SET status = 'abandoned', "
                "completed_at = coalesce(completed_at, now()), "
                f"error = coalesce(error, {_quote(ABANDONED_ERROR.format(status=status))}) "
                f"WHERE status = {_quote(status)}"
            )
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


# --- views: saved with their definitions, owners, grants and comments, then recreated ---------

_RELATION_FACTS = """
SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relkind,
       quote_ident(pg_get_userbyid(c.relowner)) AS owner,
       pg_get_viewdef(c.oid) AS definition,
       coalesce(array_to_string(ARRAY(
           SELECT opt FROM unnest(c.reloptions) opt WHERE opt NOT LIKE 'check_option=%'), ', '), '')
         AS options,
       (SELECT split_part(opt, '=', 2) FROM unnest(c.reloptions) opt
         WHERE opt LIKE 'check_option=%') AS check_option,
       quote_literal(obj_description(c.oid, 'pg_class')) AS comment,
       ARRAY(SELECT format('COMMENT ON COLUMN %I.%I.%I IS %L', n.nspname, c.relname, a.attname,
                           col_description(c.oid, a.attnum))
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
               AND col_description(c.oid, a.attnum) IS NOT NULL ORDER BY a.attnum) AS column_comments,
       ARRAY(SELECT format('GRANT %s ON %I.%I TO %s%s', acl.privilege_type, n.nspname, c.relname,
                           CASE WHEN acl.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(acl.grantee)) END,
                           CASE WHEN acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM aclexplode(c.relacl) WITH ORDINALITY AS acl(grantor, grantee, privilege_type,
                                                              is_grantable, n)
             WHERE acl.grantee <> c.relowner ORDER BY acl.n) AS grants,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid) AS has_triggers,
       EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN')
         AS has_rules
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
"""


def _dependent_views(connection: Connection) -> list[dict[str, Any]]:
    """Views over the KPI tables or the old materialized views, recursively, shallowest first."""
    rows = connection.execute(
        text(
            "WITH RECURSIVE roots AS (SELECT to_regclass(name) AS oid FROM unnest("
            "CAST(:roots AS text[])) name WHERE to_regclass(name) IS NOT NULL), "
            "dependents(oid, depth) AS ("
            "  SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "  WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
            "    AND d.refobjid IN (SELECT oid FROM roots) AND r.ev_class <> d.refobjid "
            "  UNION ALL "
            "  SELECT r.ev_class, dependents.depth + 1 FROM dependents "
            "  JOIN pg_depend d ON d.refobjid = dependents.oid AND d.classid = 'pg_rewrite'::regclass "
            "    AND d.refclassid = 'pg_class'::regclass "
            "  JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class <> dependents.oid) "
            "SELECT oid, max(depth) AS depth FROM dependents "
            "WHERE oid NOT IN (SELECT oid FROM roots) GROUP BY oid"
        ),
        {"roots": list(KPI_TABLES + MATERIALIZED_VIEWS)},
    ).all()
    depth = {row.oid: row.depth for row in rows}
    if not depth:
        return []
    facts = connection.execute(
        text(_RELATION_FACTS + " WHERE c.oid = ANY(CAST(:oids AS oid[]))"), {"oids": list(depth)}
    ).mappings()
    views = sorted(
        (dict(row) for row in facts), key=lambda view: (depth[view["oid"]], view["name"])
    )
    for view in views:
        if view["relkind"] != "v" or view["has_triggers"] or view["has_rules"]:
            raise CommandFailed(
                f"cannot adopt: {view['name']} depends on the KPI tables and is a materialized "
                "view or has triggers or rules, which adoption does not recreate. Drop it, adopt, "
                "and create it again. Nothing was changed."
            )
    return views


def _materialized_views(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(
        text(
            _RELATION_FACTS + " WHERE c.oid IN (SELECT to_regclass(name) FROM unnest("
            "CAST(:names AS text[])) name) ORDER BY c.relname"
        ),
        {"names": list(MATERIALIZED_VIEWS)},
    ).mappings()
    return [dict(row) for row in rows]


def _restore(step: Step, kind: str, facts: dict[str, Any], name: str) -> None:
    """Owner, grants and comments of a recreated view, as they were."""
    step.add(f"ALTER {kind} {name} OWNER TO {facts['owner']}")
    for grant in facts["grants"]:
        step.add(grant)
    if facts["comment"]:
        step.add(f"COMMENT ON {kind} {name} IS {facts['comment']}")
    for comment in facts["column_comments"]:
        step.add(comment)


def _recreate_views_step(views: list[dict[str, Any]]) -> Step:
    step = Step(
        "recreate-views",
        f"recreate {', '.join(view['name'] for view in views)} with their definitions, owners, "
        "grants and comments",
    )
    for view in views:
        options = f" WITH ({view['options']})" if view["options"] else ""
        check = f" WITH {view['check_option'].upper()} CHECK OPTION" if view["check_option"] else ""
        definition = view["definition"].strip().rstrip(";")
        step.add(f"CREATE VIEW {view['name']}{options} AS\n{definition}{check}")
        _restore(step, "VIEW", view, view["name"])
    return step


def _revision_module(revision: str) -> Any:
    from kpictl.services.schema.migrate import revision_module

    return revision_module(revision)


def _materialized_view_step(old_views: list[dict[str, Any]]) -> Step:
    pipeline = _revision_module("0002")
    step = Step(
        "materialized-views",
        "create kpictl's mv_factory_kpis_24h and mv_product_kpis_7d (same names, real data)"
        + (", keeping the old ones' owners and grants" if old_views else ""),
    )
    step.add(pipeline.FACTORY_VIEW)
    step.add("CREATE UNIQUE INDEX ux_mv_factory_kpis_24h ON mv_factory_kpis_24h (id)")
    step.add(pipeline.PRODUCT_VIEW)
    step.add("CREATE UNIQUE INDEX ux_mv_product_kpis_7d ON mv_product_kpis_7d (repository_id)")
    for view in old_views:
        _restore(step, "MATERIALIZED VIEW", view, view["name"])
    return step


# --- the platform's functions (adopt_functions.py) -------------------------------------------


def _functions_steps(connection: Connection, zone: str) -> tuple[Step, Step]:
    """(replace the platform's functions that the conversion would break, call every platform
    function once more before the commit)."""
    from kpictl.services.pipeline.kpi_sql import SourceClock

    clock = SourceClock.detect(connection)
    functions = adopt_functions.plan_functions(
        connection, clock.started_zoneless, clock.completed_zoneless, zone
    )
    replace = Step("functions", adopt_functions.describe(functions))
    for statement in functions.statements:
        replace.add(statement)
    check = Step("check", "")
    for statement in functions.checks:
        check.add(statement)
    if functions.checks:
        check.summary = "check that the platform's functions still run: " + ", ".join(
            statement.removeprefix("SELECT count(*) FROM ").removeprefix("SELECT ")
            for statement in functions.checks
        )
    return replace, check


# --- kpictl's own tables and the record of the adoption ---------------------------------------


def _own_tables_step(connection: Connection) -> Step:
    step = Step("tables", "")
    created = []
    for name in ("tenants", "kpi_history"):
        if _exists(connection, name):
            continue
        created.append(name)
        table = schema.metadata.tables[name]
        step.add(str(CreateTable(table).compile(dialect=_DIALECT)))
        for index in sorted(table.indexes, key=lambda index: index.name):
            step.add(str(CreateIndex(index).compile(dialect=_DIALECT)))
    if "kpi_history" in created:
        predicate = schema.KPI_HISTORY_POLICY_PREDICATE
        step.add("ALTER TABLE kpi_history ENABLE ROW LEVEL SECURITY")
        step.add("ALTER TABLE kpi_history FORCE ROW LEVEL SECURITY")
        step.add(
            f"CREATE POLICY {schema.KPI_HISTORY_POLICY} ON kpi_history "
            f"USING ({predicate}) WITH CHECK ({predicate})"
        )
    if created:
        step.summary = f"create kpictl's {' and '.join(created)} (row-level security as in 0001)"
    return step


def _record_step(plan: AdoptionPlan, metadata: dict[str, Any]) -> Step:
    from kpictl.services.schema.migrate import VERSION_TABLE

    details = {
        **metadata,
        "adopted_from": "AFU-9",
        "revision": ADOPTED_REVISION,
        "source_timezone": plan.source_timezone,
        "snapshots_before": plan.snapshots,
        "snapshots_kept": plan.snapshots_kept,
        "duplicates_removed": plan.duplicates,
        "duplicates_by_level": plan.duplicates_by_level,
        "jobs_abandoned": plan.jobs_abandoned,
        "views_recreated": plan.views,
    }
    step = Step(
        "record",
        f"record the adoption ({MARKER_TABLE}, a job row of type 'adopt') and stamp revision "
        f"{ADOPTED_REVISION}",
    )
    step.add(
        f"CREATE TABLE {MARKER_TABLE} (adopted_at timestamptz NOT NULL DEFAULT now(), "
        "adopted_from text NOT NULL, revision varchar(32) NOT NULL, "
        "duplicates_removed bigint NOT NULL, jobs_abandoned bigint NOT NULL, job_id uuid)"
    )
    step.add(
        f"COMMENT ON TABLE {MARKER_TABLE} IS 'kpictl adopted this AFU-9 database: a one-way "
        f"data migration; kpictl refuses to downgrade below revision {ADOPTED_REVISION}'"
    )
    step.add(
        "INSERT INTO kpi_aggregation_jobs (id, job_type, status, started_at, completed_at, "
        "duration_ms, snapshots_created, metadata) VALUES (CAST(:job_id AS uuid), 'adopt', "
        "'completed', now(), clock_timestamp(), "
        "round(extract(epoch FROM clock_timestamp() - now()) * 1000), 0, "
        "CAST(:metadata AS jsonb))",
        {"job_id": str(plan.job_id), "metadata": json.dumps(details, default=str, sort_keys=True)},
    )
    step.add(
        f"INSERT INTO {MARKER_TABLE} (adopted_from, revision, duplicates_removed, jobs_abandoned, "
        "job_id) VALUES ('AFU-9', :revision, :duplicates, :jobs, CAST(:job_id AS uuid))",
        {
            "revision": ADOPTED_REVISION,
            "duplicates": plan.duplicates,
            "jobs": plan.jobs_abandoned,
            "job_id": str(plan.job_id),
        },
    )
    # Alembic's own version table, as its MigrationContext creates it.
    step.add(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    step.add(
        f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)",
        {"revision": ADOPTED_REVISION},
    )
    return step


# --- running it ---------------------------------------------------------------------------------


def _execute(connection: Connection, statement: Statement) -> None:
    if statement.params:
        connection.execute(text(statement.sql), statement.params)
    else:
        # Driver-level and without parameters: view and function bodies may hold ':' and '%'.
        connection.exec_driver_sql(statement.sql, execution_options={"no_parameters": True})


def _run_check(connection: Connection, statement: Statement) -> None:
    savepoint = connection.begin_nested()
    try:
        _execute(connection, statement)
    except Exception as exc:
        savepoint.rollback()
        raise CommandFailed(
            f"adoption would break the platform: `{statement.sql}` fails afterwards "
            f"({str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}). Nothing was changed."
        ) from exc
    savepoint.rollback()


def adopt(
    connection: Connection,
    *,
    source_timezone: str = "UTC",
    metadata: dict[str, Any] | None = None,
    fail_after: str | None = None,
) -> AdoptionResult:
    """Adopt the AFU-9 tables in one transaction on `connection` (which holds no transaction),
    committed at the end; or do nothing when there is nothing to adopt.

    `fail_after` is a test hook: raise after that step, inside the transaction.
    """
    if not needs_adoption(connection):
        reason = (
            "already adopted"
            if is_adopted(connection)
            else "no AFU-9 KPI tables without a kpictl revision"
        )
        connection.commit()
        return AdoptionResult(False, reason)
    connection.commit()
    with connection.begin():
        connection.exec_driver_sql(LOCK)
        if not needs_adoption(connection):  # another process adopted it while we waited
            return AdoptionResult(False, "already adopted")
        plan = build_plan(connection, source_timezone, metadata or {})
        log.info("Adopting the AFU-9 database: %d steps", len(plan.steps))
        for step in plan.steps:
            for statement in step.statements:
                if step.name == "check":
                    _run_check(connection, statement)
                else:
                    _execute(connection, statement)
            log.info("adopt: %s", step.summary or step.name)
            if fail_after == step.name:
                raise CommandFailed(f"adoption interrupted after step {step.name!r} (test hook)")
    log.info(
        "Adoption committed: %d duplicate snapshots removed, %d jobs abandoned",
        plan.duplicates,
        plan.jobs_abandoned,
    )
    return AdoptionResult(
        True,
        "",
        duplicates_removed=plan.duplicates,
        duplicates_by_level=plan.duplicates_by_level,
        snapshots_kept=plan.snapshots_kept,
        jobs_abandoned=plan.jobs_abandoned,
        views_recreated=plan.views,
        job_id=str(plan.job_id),
        summary=plan.describe(),
    )


def adoption_sql(
    connection: Connection, *, source_timezone: str = "UTC", metadata: dict[str, Any] | None = None
) -> str:
    """The adoption's SQL for a DBA, from a read-only look at the live database."""
    with connection.begin() as transaction:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        if not needs_adoption(connection):
            reason = "already adopted" if is_adopted(connection) else "no AFU-9 KPI tables here"
            transaction.rollback()
            return (
                f"-- kpictl: nothing to adopt ({reason}); `kpictl migrate --sql` prints the rest\n"
            )
        plan = build_plan(connection, source_timezone, metadata or {})
        transaction.rollback()
    after = ["\n-- after the commit, outside any transaction:"]
    after += [f"{statement};" for statement in source_index_statements()]
    return plan.sql() + "\n".join(after) + "\n"


def source_index_statements() -> list[str]:
    pipeline = _revision_module("0002")
    return [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})"
        for name, table, column in pipeline.SOURCE_INDEXES
    ]


def ensure_source_indexes(connection: Connection) -> list[str]:
    """Build 0002's `kpictl_*` source indexes that are missing (or left invalid by an
    interrupted build), CONCURRENTLY, outside any transaction. Returns the names built."""
    pipeline = _revision_module("0002")
    built = []
    connection.commit()
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        for name, table, column in pipeline.SOURCE_INDEXES:
            valid = connection.execute(
                text("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:name)"),
                {"name": name},
            ).scalar()
            if valid:
                continue
            if valid is False:
                connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            log.info("Building index %s on %s (%s) concurrently", name, table, column)
            connection.exec_driver_sql(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})"
            )
            built.append(name)
    finally:
        connection.commit()
        connection.execution_options(isolation_level=connection.default_isolation_level)
    return built
