"""Tenant access that cannot be spoofed: per-role read grants, `app.tenant` for service roles only

Until now the one policy on `kpi_history` trusted the session setting `app.tenant` for every
role, so a dashboard role with SELECT could `SET app.tenant = '<another tenant>'` and read that
tenant's rows. From this revision:

1. `kpi_history_grants (role_name, tenant_id)`: which database role may read which tenant's
   rows (`kpictl history grant` / `revoke`). Readable by PUBLIC, but its own row-level security
   shows each role only the rows of the roles it has the privileges of; only the owner writes.
2. `kpi_history_tenant_isolation` (every command) keeps `tenant_id = app.tenant`, but only for
   kpictl's service roles: a role that holds INSERT on `kpi_history` (directly, through a role
   it inherits, or as the owner), i.e. one that may already write any tenant's rows.
3. `kpi_history_tenant_grants` (SELECT only): the rows of the tenants granted to the current
   role or to a role whose privileges it inherits (`pg_has_role(current_user, role, 'USAGE')`).
   No setting takes part, so no `SET` can widen it.

`'kpi_history'::regclass` is resolved once, here, to the table's OID: a caller's search_path
cannot point the privilege test at a table of its own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ISOLATION_POLICY = "kpi_history_tenant_isolation"
GRANTS_POLICY = "kpi_history_tenant_grants"
OWN_GRANTS_POLICY = "kpi_history_grants_own_rows"

# 0001's predicate, restored on downgrade.
OLD_PREDICATE = "tenant_id = nullif(current_setting('app.tenant', true), '')::uuid"
# A service role: may write kpi_history (INSERT), so it is trusted with `app.tenant`. In a scalar
# subquery so that it is evaluated once per statement, not per row.
SERVICE_ROLE = "(SELECT has_table_privilege(current_user, 'kpi_history'::regclass, 'INSERT'))"
ISOLATION_PREDICATE = f"{OLD_PREDICATE} AND {SERVICE_ROLE}"
# The granted roles are joined to pg_roles first: pg_has_role() on a role name that no longer
# exists would be an error for every reader; a dropped role's rows simply match nobody.
GRANTED_TENANTS = (
    "tenant_id IN (SELECT g.tenant_id FROM kpi_history_grants g "
    "JOIN pg_roles r ON r.rolname = g.role_name "
    "WHERE pg_has_role(current_user, r.oid, 'USAGE'))"
)
OWN_GRANT_ROWS = (
    "EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name "
    "AND pg_has_role(current_user, r.oid, 'USAGE'))"
)

CREATE_ISOLATION = (
    f"CREATE POLICY {ISOLATION_POLICY} ON kpi_history "
    f"USING ({ISOLATION_PREDICATE}) WITH CHECK ({ISOLATION_PREDICATE})"
)
CREATE_GRANTS = f"CREATE POLICY {GRANTS_POLICY} ON kpi_history FOR SELECT USING ({GRANTED_TENANTS})"
# What doctor expects on kpi_history at head, and what `kpictl migrate` recreates when missing.
POLICIES = {ISOLATION_POLICY: CREATE_ISOLATION, GRANTS_POLICY: CREATE_GRANTS}


def upgrade() -> None:
    op.create_table(
        "kpi_history_grants",
        sa.Column("role_name", sa.Text(), nullable=False),
        sa.Column("tenant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "granted_at",
            pg.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_kpi_history_grants_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role_name", "tenant_id", name="pk_kpi_history_grants"),
    )
    op.execute("ALTER TABLE kpi_history_grants ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {OWN_GRANTS_POLICY} ON kpi_history_grants FOR SELECT "
        f"USING ({OWN_GRANT_ROWS})"
    )
    # Every query on kpi_history evaluates the policies with the caller's privileges.
    op.execute("GRANT SELECT ON kpi_history_grants TO PUBLIC")
    op.execute(f"DROP POLICY IF EXISTS {ISOLATION_POLICY} ON kpi_history")
    op.execute(CREATE_ISOLATION)
    op.execute(CREATE_GRANTS)


def downgrade() -> None:
    op.execute(f"DROP POLICY IF EXISTS {GRANTS_POLICY} ON kpi_history")
    op.execute(f"DROP POLICY IF EXISTS {ISOLATION_POLICY} ON kpi_history")
    op.execute(
        f"CREATE POLICY {ISOLATION_POLICY} ON kpi_history "
        f"USING ({OLD_PREDICATE}) WITH CHECK ({OLD_PREDICATE})"
    )
    op.drop_table("kpi_history_grants")
