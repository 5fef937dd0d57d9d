"""Every table kpictl touches, as SQLAlchemy Core `Table`s, in one place.

`metadata` holds kpictl's own tables (created by the Alembic migrations; a test checks that an
autogenerate comparison finds no difference). `source_metadata` holds the platform's source
tables as kpictl reads them: `migrate --with-sources` creates them when absent, and `doctor`
checks a live database against `SOURCE_COLUMNS`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP, UUID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TIMESTAMPTZ = TIMESTAMP(timezone=True)
LEVELS = ("run", "product", "factory")
JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "abandoned")


def _uuid_pk() -> Column[uuid.UUID]:
    return Column(
        "id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


metadata = MetaData(naming_convention=NAMING_CONVENTION)

kpi_snapshots = Table(
    "kpi_snapshots",
    metadata,
    # revision 0008: partitioned by level, then by period_end (kpictl/db/partitions.py); a
    # partitioned table's primary key must hold the partition keys
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("kpi_name", String(100), nullable=False),
    Column("kpi_version", String(20), nullable=False, server_default=text("'1.0.0'")),
    Column("level", String(20), primary_key=True),
    Column("scope_id", UUID(as_uuid=True), nullable=True),
    Column("value", Numeric, nullable=True),
    Column("unit", String(50), nullable=True),
    Column("metadata", JSONB, nullable=True),
    Column("calculated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("period_start", TIMESTAMPTZ, nullable=False),
    Column("period_end", TIMESTAMPTZ, primary_key=True),
    Column("job_id", UUID(as_uuid=True), nullable=True),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    CheckConstraint(_in_list("level", LEVELS), name="level"),
    # revision 0005: no value is ever NaN or infinite (a bad source row is an invalid run)
    CheckConstraint(
        "value IS NULL OR value NOT IN ('NaN', 'Infinity', '-Infinity')", name="value_finite"
    ),
    # The uniqueness key of docs/spec/pipeline.md §2: NULL scope (factory rows) included. Column order:
    # period_end before scope_id, so that the run level's per-run probes, which follow the
    # runs' completed_at (= period_end), read the index in order instead of at random.
    UniqueConstraint(
        "level",
        "kpi_name",
        "kpi_version",
        "period_end",
        "scope_id",
        "period_start",
        name="uq_kpi_snapshots_key",
        postgresql_nulls_not_distinct=True,
    ),
    # latest value / freshness per KPI at product and factory level. Run rows are left out on
    # purpose: an index led by (level, kpi_name) would compete, on missing statistics, with the
    # key index for the per-run existence probe and turn each probe into a scan of every run.
    Index(
        "ix_kpi_snapshots_latest",
        "kpi_name",
        "calculated_at",
        postgresql_where=text("level IN ('factory', 'product')"),
    ),
    # retention deletes by age per level
    Index("ix_kpi_snapshots_calculated_at", "calculated_at"),
    # backfill resume and jobs show: what a job wrote
    Index("ix_kpi_snapshots_job_id", "job_id"),
    postgresql_partition_by="LIST (level)",
)

kpi_aggregation_jobs = Table(
    "kpi_aggregation_jobs",
    metadata,
    _uuid_pk(),
    Column("job_type", String(100), nullable=False),
    Column("status", String(50), nullable=False, server_default=text("'running'")),
    Column("kpi_names", ARRAY(Text), nullable=True),
    Column("period_start", TIMESTAMPTZ, nullable=True),
    Column("period_end", TIMESTAMPTZ, nullable=True),
    Column("started_at", TIMESTAMPTZ, nullable=True),
    Column("completed_at", TIMESTAMPTZ, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("snapshots_created", Integer, nullable=False, server_default=text("0")),
    Column("error", Text, nullable=True),
    Column("metadata", JSONB, nullable=True),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    CheckConstraint(_in_list("status", JOB_STATUSES), name="status"),
    Index("ix_kpi_aggregation_jobs_created_at", "created_at"),
    Index("ix_kpi_aggregation_jobs_status", "status"),
    Index("ix_kpi_aggregation_jobs_job_type_started_at", "job_type", "started_at"),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("slug", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
)

kpi_history = Table(
    "kpi_history",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("aiv_pct", Numeric(5, 2)),
    Column("ati_pct", Numeric(5, 2)),
    Column("crs_pct", Numeric(5, 2)),
    Column("elasticity_usd_per_point", Numeric(10, 2)),
    Column("vli_integrity_pct", Numeric(5, 2)),
    Column("hrp_pct", Numeric(5, 2)),
    Column("vli_fallback", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    UniqueConstraint("tenant_id", "as_of"),
)

# Which database role may read which tenant's kpi_history rows (revision 0006; `kpictl history
# grant` / `revoke`; docs/SECURITY.md). Read by the policy KPI_HISTORY_GRANTS_POLICY.
kpi_history_grants = Table(
    "kpi_history_grants",
    metadata,
    Column("role_name", Text, primary_key=True),
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("granted_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
    Column("granted_by", Text, nullable=False),
)

# Hourly additive parts of the pipeline (revision 0004; kpictl/services/pipeline/hourly_parts.py): a
# cycle rolls its window up from them instead of re-reading every run of it. Per UTC hour of
# completed_at and repository (NULL and disabled repositories included):
kpi_hourly_runs = Table(
    "kpi_hourly_runs",
    metadata,
    Column("hour", TIMESTAMPTZ, nullable=False),
    Column("repository_id", UUID(as_uuid=True), nullable=True),
    Column("completed", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("duration_sum_ms", Numeric, nullable=True),
    Column("invalid", BigInteger, nullable=False),
    UniqueConstraint("hour", "repository_id", postgresql_nulls_not_distinct=True),
)

# One row per hour that has parts (a contiguous range, zero hours included): its verdict parts,
# and how many executions (by completed_at) and verdicts (by decided_at) it counted, whatever
# their status, which is how a later cycle notices rows written late into the hour.
kpi_hourly_totals = Table(
    "kpi_hourly_totals",
    metadata,
    Column("hour", TIMESTAMPTZ, primary_key=True),
    Column("executions", BigInteger, nullable=False),
    Column("verdicts", BigInteger, nullable=False),
    Column("accepted", BigInteger, nullable=False),
    Column("overridden", BigInteger, nullable=False),
    Column("escalated", BigInteger, nullable=False),
    Column("computed_at", TIMESTAMPTZ, nullable=False, server_default=text("now()")),
)

# Row-level security of docs/spec/history.md §4: a session sees and writes only the rows of the tenant
# named by `app.tenant`, set with set_config(..., true) inside the transaction; unset = nothing.
# KPI_HISTORY_POLICY_PREDICATE is revision 0001's form (adoption recreates that state);
# revision 0006 limits it to service roles (INSERT on kpi_history) and adds the read-only
# KPI_HISTORY_GRANTS_POLICY for the roles of kpi_history_grants.
KPI_HISTORY_POLICY = "kpi_history_tenant_isolation"
KPI_HISTORY_GRANTS_POLICY = "kpi_history_tenant_grants"
TENANT_SETTING = "app.tenant"
KPI_HISTORY_POLICY_PREDICATE = (
    f"tenant_id = nullif(current_setting('{TENANT_SETTING}', true), '')::uuid"
)


# --- source tables (the platform's; kpictl only reads them) -------------------------------

source_metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _created_at() -> Column[datetime]:
    return Column("created_at", TIMESTAMPTZ, nullable=False, server_default=text("now()"))


repositories = Table(
    "repositories",
    source_metadata,
    _uuid_pk(),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("kpi_enabled", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
)

workflow_executions = Table(
    "workflow_executions",
    source_metadata,
    _uuid_pk(),
    Column("repository_id", UUID(as_uuid=True), nullable=True),
    Column("status", Text, nullable=False),
    Column("started_at", TIMESTAMPTZ, nullable=True),
    Column("completed_at", TIMESTAMPTZ, nullable=True),
    _created_at(),
)

agent_runs = Table(
    "agent_runs",
    source_metadata,
    _uuid_pk(),
    Column("execution_id", UUID(as_uuid=True), nullable=False),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("total_tokens", Integer, nullable=True),
    _created_at(),
)

mcp_tool_calls = Table(
    "mcp_tool_calls",
    source_metadata,
    _uuid_pk(),
    Column("execution_id", UUID(as_uuid=True), nullable=False),
    Column("error", Text, nullable=True),
    _created_at(),
)

verdict_outcomes = Table(
    "verdict_outcomes",
    source_metadata,
    _uuid_pk(),
    Column("execution_id", UUID(as_uuid=True), nullable=True),
    Column("outcome", Text, nullable=False),
    Column("decided_at", TIMESTAMPTZ, nullable=True),
    _created_at(),
)

avi_reports = Table(
    "avi_reports",
    source_metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("aiv_pct", Numeric),
    Column("ati_pct", Numeric),
    Column("crs_pct", Numeric),
    Column("elasticity_usd_per_point", Numeric),
    Column("clarity_json", JSONB, nullable=True),
    _created_at(),
)

vdp_vli_audit = Table(
    "vdp_vli_audit",
    source_metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("vdp_id", Text, nullable=False),
    Column("as_of", TIMESTAMPTZ, nullable=False),
    Column("integrity_pct", Numeric(5, 2)),
    _created_at(),
)

PIPELINE_SOURCES = (
    "repositories",
    "workflow_executions",
    "agent_runs",
    "mcp_tool_calls",
    "verdict_outcomes",
)
HISTORY_SOURCES = ("avi_reports", "vdp_vli_audit")

# What kpictl reads from each source table, by type family (doctor checks these).
SOURCE_COLUMNS: dict[str, dict[str, str]] = {
    "repositories": {"id": "uuid", "owner": "text", "name": "text", "kpi_enabled": "boolean"},
    "workflow_executions": {
        "id": "uuid",
        "repository_id": "uuid",
        "status": "text",
        "started_at": "timestamp",
        "completed_at": "timestamp",
    },
    "agent_runs": {
        "execution_id": "uuid",
        "prompt_tokens": "integer",
        "completion_tokens": "integer",
        "total_tokens": "integer",
    },
    "mcp_tool_calls": {"execution_id": "uuid", "error": "text"},
    "verdict_outcomes": {"execution_id": "uuid", "outcome": "text", "decided_at": "timestamp"},
    "avi_reports": {
        "id": "any",
        "tenant_id": "uuid",
        "as_of": "date",
        "aiv_pct": "numeric",
        "ati_pct": "numeric",
        "crs_pct": "numeric",
        "elasticity_usd_per_point": "numeric",
        "clarity_json": "json",
        "created_at": "timestamp",
    },
    "vdp_vli_audit": {
        "tenant_id": "uuid",
        "vdp_id": "text",
        "as_of": "timestamp",
        "integrity_pct": "numeric",
    },
}

# PostgreSQL type names (information_schema.columns.data_type / udt_name) per family.
TYPE_FAMILIES: dict[str, set[str]] = {
    "uuid": {"uuid"},
    "text": {"text", "character varying", "character", "USER-DEFINED"},  # enums count as text
    "boolean": {"boolean"},
    "timestamp": {"timestamp without time zone", "timestamp with time zone"},
    "integer": {"integer", "bigint", "smallint", "numeric"},
    "numeric": {"numeric", "integer", "bigint", "smallint", "double precision", "real"},
    "json": {"jsonb", "json"},
    "date": {"date"},
}
