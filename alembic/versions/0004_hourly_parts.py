"""Hourly additive parts: a cycle rolls its window up instead of re-reading every run of it

`kpi_hourly_runs` holds, per UTC hour of completed_at and repository, the additive parts of
docs/spec/pipeline.md §3 (completed, failed, duration sum, invalid runs); `kpi_hourly_totals` holds one row
for every hour kpictl keeps (zero hours included), with its verdict parts and how many
executions and verdicts it saw (what a later cycle compares to notice late writes). The set of
hours in `kpi_hourly_totals` is contiguous: the views and the pipeline read parts for the hours
in it and the source tables for the rest, so a missing or lagging part never changes a value.

Both materialized views are recreated over those parts (same names, columns and unique
indexes; owners, grants and comments kept).

One more kpictl_* index on the platform's `workflow_executions`, partial and tiny: the runs with
a terminal status but no completed_at (invalid runs, placed by started_at), which every cycle
counts and which otherwise cost a scan of the whole table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TSTZ = pg.TIMESTAMP(timezone=True)
VIEWS = ("mv_factory_kpis_24h", "mv_product_kpis_7d")

TERMINAL = """e.status IN ('completed', 'failed')
      AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
      AND e.completed_at >= e.started_at"""

# The window [period_start, period_end) split into the full UTC hours kpictl keeps parts for
# ([parts_from, parts_to)) and the rest, read from the source tables. No parts in the window:
# parts_from = parts_to = period_end, and everything is read from the sources.
SPANS = """
spans AS (
  SELECT b.period_start, b.period_end,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.lo ELSE b.period_end END AS parts_from,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.hi ELSE b.period_end END AS parts_to
  FROM bounds b,
  LATERAL (
    SELECT greatest(date_bin('1 hour', b.period_start - interval '1 microsecond',
                             TIMESTAMPTZ '2000-01-01 00:00:00+00') + interval '1 hour',
                    min(h.hour)) AS lo,
           least(date_bin('1 hour', b.period_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                 max(h.hour) + interval '1 hour') AS hi,
           count(*) > 0 AS kept
    FROM kpi_hourly_totals h
  ) p
)"""

RAW_RUNS = f"""
  FROM workflow_executions e, spans s
  WHERE {TERMINAL}
    AND ((e.completed_at >= s.period_start AND e.completed_at < s.parts_from)
         OR (e.completed_at >= s.parts_to AND e.completed_at < s.period_end))"""

FACTORY_VIEW = f"""
CREATE MATERIALIZED VIEW mv_factory_kpis_24h AS
WITH bounds AS (
  SELECT now() - interval '24 hours' AS period_start, now() AS period_end
),
{SPANS},
parts AS (
  SELECT coalesce(sum(h.completed), 0) AS completed, coalesce(sum(h.failed), 0) AS failed,
         sum(h.duration_sum_ms) AS duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE h.hour >= s.parts_from AND h.hour < s.parts_to
  UNION ALL
  SELECT count(*) FILTER (WHERE e.status = 'completed'),
         count(*) FILTER (WHERE e.status = 'failed'),
         sum(extract(epoch FROM e.completed_at - e.started_at) * 1000)
  {RAW_RUNS}
),
run_totals AS (
  SELECT CAST(sum(completed) + sum(failed) AS bigint) AS terminal_runs,
         CAST(sum(completed) AS bigint) AS completed_runs,
         CAST(sum(failed) AS bigint) AS failed_runs,
         sum(duration_sum_ms) / nullif(sum(completed) + sum(failed), 0) AS mtti_ms
  FROM parts
),
verdict_parts AS (
  SELECT coalesce(sum(h.accepted), 0) AS accepted,
         coalesce(sum(h.accepted + h.overridden + h.escalated), 0) AS decided
  FROM kpi_hourly_totals h, spans s
  WHERE h.hour >= s.parts_from AND h.hour < s.parts_to
  UNION ALL
  SELECT count(*) FILTER (WHERE v.outcome = 'accepted'), count(*)
  FROM verdict_outcomes v, spans s
  WHERE v.outcome IN ('accepted', 'overridden', 'escalated')
    AND ((v.decided_at >= s.period_start AND v.decided_at < s.parts_from)
         OR (v.decided_at >= s.parts_to AND v.decided_at < s.period_end))
),
verdicts AS (
  SELECT CAST(sum(accepted) AS bigint) AS accepted, CAST(sum(decided) AS bigint) AS decided
  FROM verdict_parts
)
SELECT 1 AS id, b.period_start, b.period_end,
       t.terminal_runs, t.completed_runs, t.failed_runs,
       100.0 * t.completed_runs / nullif(t.terminal_runs, 0) AS success_rate,
       t.mtti_ms,
       CAST(t.terminal_runs AS numeric) AS runs_per_day,
       v.accepted AS verdicts_accepted, v.decided AS verdicts_decided,
       100.0 * v.accepted / nullif(v.decided, 0) AS steering_accuracy
FROM bounds b, run_totals t, verdicts v
"""

PRODUCT_VIEW = f"""
CREATE MATERIALIZED VIEW mv_product_kpis_7d AS
WITH bounds AS (
  SELECT now() - interval '168 hours' AS period_start, now() AS period_end
),
{SPANS},
parts AS (
  SELECT h.repository_id, h.completed, h.failed, h.duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE h.hour >= s.parts_from AND h.hour < s.parts_to
  UNION ALL
  SELECT e.repository_id, count(*) FILTER (WHERE e.status = 'completed'),
         count(*) FILTER (WHERE e.status = 'failed'),
         sum(extract(epoch FROM e.completed_at - e.started_at) * 1000)
  {RAW_RUNS}
  GROUP BY e.repository_id
),
products AS (
  SELECT repository_id, CAST(sum(completed) AS bigint) AS completed,
         CAST(sum(failed) AS bigint) AS failed,
         sum(duration_sum_ms) AS duration_sum_ms
  FROM parts GROUP BY repository_id
)
SELECT r.id AS repository_id,
       r.owner || '/' || r.name AS product,
       p.completed + p.failed AS terminal_runs,
       p.completed AS completed_runs,
       p.failed AS failed_runs,
       100.0 * p.completed / (p.completed + p.failed) AS success_rate,
       (p.completed + p.failed) / 7.0 AS runs_per_day,
       p.duration_sum_ms / (p.completed + p.failed) AS avg_duration_ms
FROM products p
JOIN repositories r ON r.id = p.repository_id AND r.kpi_enabled
WHERE p.completed + p.failed > 0
"""

# Owner, grants and comment of the views, kept across their recreation (as adoption set them,
# or as a DBA did since). Server-side, so that `migrate --sql` prints the same thing.
SAVE_VIEW_FACTS = """
CREATE TEMP TABLE kpictl_saved_views ON COMMIT DROP AS
SELECT c.relname::text AS name, pg_get_userbyid(c.relowner) AS owner,
       obj_description(c.oid, 'pg_class') AS comment,
       ARRAY(SELECT format('GRANT %s ON %I TO %s%s', acl.privilege_type, c.relname,
                           CASE WHEN acl.grantee = 0 THEN 'PUBLIC'
                                ELSE quote_ident(pg_get_userbyid(acl.grantee)) END,
                           CASE WHEN acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
             FROM aclexplode(c.relacl) WITH ORDINALITY AS acl(grantor, grantee, privilege_type,
                                                              is_grantable, n)
             WHERE acl.grantee <> c.relowner ORDER BY acl.n) AS grants
FROM pg_class c
WHERE c.relkind = 'm' AND c.relnamespace = current_schema()::regnamespace
  AND c.relname IN ('mv_factory_kpis_24h', 'mv_product_kpis_7d')
"""

RESTORE_VIEW_FACTS = """
DO $$
DECLARE
  saved record;
  statement text;
BEGIN
  FOR saved IN SELECT * FROM kpictl_saved_views LOOP
    EXECUTE format('ALTER MATERIALIZED VIEW %I OWNER TO %I', saved.name, saved.owner);
    FOREACH statement IN ARRAY saved.grants LOOP
      EXECUTE statement;
    END LOOP;
    IF saved.comment IS NOT NULL THEN
      EXECUTE format('COMMENT ON MATERIALIZED VIEW %I IS %L', saved.name, saved.comment);
    END IF;
  END LOOP;
END
$$
"""


# (index name, table, column, predicate): built CONCURRENTLY on the live source table.
SOURCE_INDEXES = (
    (
        "kpictl_workflow_executions_open_started_at",
        "workflow_executions",
        "started_at",
        "completed_at IS NULL AND status IN ('completed', 'failed')",
    ),
)


def _replace_views(factory_view: str, product_view: str) -> None:
    op.execute(SAVE_VIEW_FACTS)
    for view in VIEWS:
        op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
    op.execute(factory_view)
    op.execute("CREATE UNIQUE INDEX ux_mv_factory_kpis_24h ON mv_factory_kpis_24h (id)")
    op.execute(product_view)
    op.execute("CREATE UNIQUE INDEX ux_mv_product_kpis_7d ON mv_product_kpis_7d (repository_id)")
    op.execute(RESTORE_VIEW_FACTS)


def upgrade() -> None:
    op.create_table(
        "kpi_hourly_runs",
        sa.Column("hour", TSTZ, nullable=False),
        sa.Column("repository_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum_ms", sa.Numeric(), nullable=True),
        sa.Column("invalid", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(
            "hour",
            "repository_id",
            name="uq_kpi_hourly_runs_hour_repository_id",
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "kpi_hourly_totals",
        sa.Column("hour", TSTZ, nullable=False),
        sa.Column("executions", sa.BigInteger(), nullable=False),
        sa.Column("verdicts", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.BigInteger(), nullable=False),
        sa.Column("overridden", sa.BigInteger(), nullable=False),
        sa.Column("escalated", sa.BigInteger(), nullable=False),
        sa.Column("computed_at", TSTZ, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("hour", name="pk_kpi_hourly_totals"),
    )
    _replace_views(FACTORY_VIEW, PRODUCT_VIEW)
    with op.get_context().autocommit_block():
        for name, table, column, predicate in SOURCE_INDEXES:
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column}) "
                f"WHERE {predicate}"
            )


def _revision_file(filename: str):
    """Another revision file of this folder (revisions import nothing from kpictl's services)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        f"kpictl_revision_{filename[:4]}", Path(__file__).with_name(filename)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _table, _column, _predicate in SOURCE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    previous = _revision_file("0002_pipeline.py")
    _replace_views(previous.FACTORY_VIEW, previous.PRODUCT_VIEW)
    op.drop_table("kpi_hourly_totals")
    op.drop_table("kpi_hourly_runs")
