"""kpictl's own tables: snapshots, jobs, tenants, kpi_history with row-level security

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = pg.TIMESTAMP(timezone=True)
UUID = pg.UUID(as_uuid=True)
POLICY_PREDICATE = "tenant_id = nullif(current_setting('app.tenant', true), '')::uuid"


def upgrade() -> None:
    op.create_table(
        "kpi_snapshots",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kpi_name", sa.String(100), nullable=False),
        sa.Column("kpi_version", sa.String(20), server_default=sa.text("'1.0.0'"), nullable=False),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("scope_id", UUID, nullable=True),
        sa.Column("value", sa.Numeric(), nullable=True),
        sa.Column("unit", sa.String(50), nullable=True),
        sa.Column("metadata", pg.JSONB(), nullable=True),
        sa.Column("calculated_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("period_start", TSTZ, nullable=False),
        sa.Column("period_end", TSTZ, nullable=False),
        sa.Column("job_id", UUID, nullable=True),
        sa.Column("created_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "level IN ('run', 'product', 'factory')", name=op.f("ck_kpi_snapshots_level")
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kpi_snapshots"),
        # period_end before scope_id: run-level probes follow completed_at (= period_end)
        sa.UniqueConstraint(
            "level",
            "kpi_name",
            "kpi_version",
            "period_end",
            "scope_id",
            "period_start",
            name="uq_kpi_snapshots_key",
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_index(
        "ix_kpi_snapshots_latest",
        "kpi_snapshots",
        ["kpi_name", "calculated_at"],
        postgresql_where=sa.text("level IN ('factory', 'product')"),
    )
    op.create_index("ix_kpi_snapshots_calculated_at", "kpi_snapshots", ["calculated_at"])
    op.create_index("ix_kpi_snapshots_job_id", "kpi_snapshots", ["job_id"])

    op.create_table(
        "kpi_aggregation_jobs",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(50), server_default=sa.text("'running'"), nullable=False),
        sa.Column("kpi_names", pg.ARRAY(sa.Text()), nullable=True),
        sa.Column("period_start", TSTZ, nullable=True),
        sa.Column("period_end", TSTZ, nullable=True),
        sa.Column("started_at", TSTZ, nullable=True),
        sa.Column("completed_at", TSTZ, nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("snapshots_created", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("metadata", pg.JSONB(), nullable=True),
        sa.Column("created_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'abandoned')",
            name=op.f("ck_kpi_aggregation_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kpi_aggregation_jobs"),
    )
    op.create_index("ix_kpi_aggregation_jobs_created_at", "kpi_aggregation_jobs", ["created_at"])
    op.create_index("ix_kpi_aggregation_jobs_status", "kpi_aggregation_jobs", ["status"])
    op.create_index(
        "ix_kpi_aggregation_jobs_job_type_started_at",
        "kpi_aggregation_jobs",
        ["job_type", "started_at"],
    )

    op.create_table(
        "tenants",
        sa.Column("id", UUID, server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("slug", name="uq_tenants_slug"),
    )

    op.create_table(
        "kpi_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant_id", UUID, nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("aiv_pct", sa.Numeric(5, 2), nullable=True),
        sa.Column("ati_pct", sa.Numeric(5, 2), nullable=True),
        sa.Column("crs_pct", sa.Numeric(5, 2), nullable=True),
        sa.Column("elasticity_usd_per_point", sa.Numeric(10, 2), nullable=True),
        sa.Column("vli_integrity_pct", sa.Numeric(5, 2), nullable=True),
        sa.Column("hrp_pct", sa.Numeric(5, 2), nullable=True),
        sa.Column("vli_fallback", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_kpi_history_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kpi_history"),
        sa.UniqueConstraint("tenant_id", "as_of", name="uq_kpi_history_tenant_id_as_of"),
    )
    # docs/spec/history.md §4: enabled and forced (the owner is filtered too), fail closed when unset.
    op.execute("ALTER TABLE kpi_history ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE kpi_history FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY kpi_history_tenant_isolation ON kpi_history "
        f"USING ({POLICY_PREDICATE}) WITH CHECK ({POLICY_PREDICATE})"
    )


def downgrade() -> None:
    op.drop_table("kpi_history")
    op.drop_table("tenants")
    op.drop_table("kpi_aggregation_jobs")
    op.drop_table("kpi_snapshots")
