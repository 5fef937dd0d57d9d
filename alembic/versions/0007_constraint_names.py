"""Constraint names said once: `ck_kpi_snapshots_level`, `ck_kpi_aggregation_jobs_status`

Revision 0001 gave its two CHECK constraints full names while kpictl's metadata has a naming
convention (`ck_%(table_name)s_%(constraint_name)s`), so Alembic applied the convention a second
time: every database migrated by kpictl before this revision has
`ck_kpi_snapshots_ck_kpi_snapshots_level` and
`ck_kpi_aggregation_jobs_ck_kpi_aggregation_jobs_status`. (0001 now marks the names as final,
`op.f()`, so a new database gets the right names at once.) This revision renames them in place
(`ALTER TABLE ... RENAME CONSTRAINT`: no table rewrite, no re-validation, a brief ACCESS
EXCLUSIVE lock), and only where the doubled name exists: an adopted database already has the
right names. The check runs in the server (a DO block), so `migrate --sql` prints the same
statement a DBA can run on any database.

Downgrade keeps the new names: no earlier revision refers to either constraint by name, and
renaming back would give an adopted database names it never had.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, name as 0001 created it, name it should have)
RENAMES = (
    ("kpi_snapshots", "ck_kpi_snapshots_ck_kpi_snapshots_level", "ck_kpi_snapshots_level"),
    (
        "kpi_aggregation_jobs",
        "ck_kpi_aggregation_jobs_ck_kpi_aggregation_jobs_status",
        "ck_kpi_aggregation_jobs_status",
    ),
)


def rename_sql(table: str, old: str, new: str) -> str:
    return f"""DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = to_regclass('{table}') AND conname = '{old}'
    ) AND NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = to_regclass('{table}') AND conname = '{new}'
    ) THEN
        ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};
    END IF;
END
$$"""


def upgrade() -> None:
    for table, old, new in RENAMES:
        op.execute(rename_sql(table, old, new))


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
