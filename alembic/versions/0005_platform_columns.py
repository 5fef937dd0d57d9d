"""The views keep the AFU-9 platform's columns; infinite timestamps are invalid runs, never values

1. Both materialized views are recreated with, beside kpictl's own columns, every column the
   AFU-9 platform's views of the same name offered (docs/spec/adoption.md, "Exact shapes"), by
   the same names, computed by kpictl's definitions: a dashboard that selected
   `success_rate_pct` or `total_executions` keeps working on an adopted database, with kpictl's
   values. The same shape on every database, adopted or not.
   - mv_factory_kpis_24h: success_rate_pct, total_executions, completed_executions,
     failed_executions, running_executions, avg_duration_ms, calculated_at (mtti_ms,
     period_start and period_end were already there).
   - mv_product_kpis_7d: product_name, success_rate_pct, daily_throughput, total_executions,
     completed_executions, failed_executions, period_start, period_end, calculated_at.
2. A terminal run counts only when both its timestamps are finite (`isfinite`): an `infinity`
   or `-infinity` makes it an invalid run, on PostgreSQL 15 (where subtracting it is an error)
   and 17+ (where it is an infinite duration) alike.
3. CHECK `ck_kpi_snapshots_value_finite`: no snapshot value is NaN or infinite.
4. One more tiny partial `kpictl_*` index on the platform's `workflow_executions`: the runs
   with status `running` by started_at, which `running_executions` counts at every refresh.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sibling(filename: str):
    """Another revision file of this folder, for the SQL this revision builds on."""
    spec = importlib.util.spec_from_file_location(
        f"kpictl_revision_{filename[:4]}", Path(__file__).with_name(filename)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARTS = _sibling("0004_hourly_parts.py")

TERMINAL = """e.status IN ('completed', 'failed')
      AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
      AND isfinite(e.started_at) AND isfinite(e.completed_at)
      AND e.completed_at >= e.started_at"""

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
{PARTS.SPANS},
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
),
running AS (
  SELECT count(*) AS running_runs
  FROM workflow_executions e, bounds b
  WHERE e.status = 'running' AND e.started_at >= b.period_start
)
SELECT 1 AS id, b.period_start, b.period_end,
       t.terminal_runs, t.completed_runs, t.failed_runs,
       100.0 * t.completed_runs / nullif(t.terminal_runs, 0) AS success_rate,
       t.mtti_ms,
       CAST(t.terminal_runs AS numeric) AS runs_per_day,
       v.accepted AS verdicts_accepted, v.decided AS verdicts_decided,
       100.0 * v.accepted / nullif(v.decided, 0) AS steering_accuracy,
       -- the AFU-9 platform's columns, by kpictl's definitions
       round(100.0 * t.completed_runs / nullif(t.terminal_runs, 0), 2) AS success_rate_pct,
       t.terminal_runs AS total_executions,
       t.completed_runs AS completed_executions,
       t.failed_runs AS failed_executions,
       r.running_runs AS running_executions,
       t.mtti_ms AS avg_duration_ms,
       now() AS calculated_at
FROM bounds b, run_totals t, verdicts v, running r
"""

PRODUCT_VIEW = f"""
CREATE MATERIALIZED VIEW mv_product_kpis_7d AS
WITH bounds AS (
  SELECT now() - interval '168 hours' AS period_start, now() AS period_end
),
{PARTS.SPANS},
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
       p.duration_sum_ms / (p.completed + p.failed) AS avg_duration_ms,
       -- the AFU-9 platform's columns, by kpictl's definitions
       r.owner || '/' || r.name AS product_name,
       round(100.0 * p.completed / (p.completed + p.failed), 2) AS success_rate_pct,
       (p.completed + p.failed) / 7.0 AS daily_throughput,
       p.completed + p.failed AS total_executions,
       p.completed AS completed_executions,
       p.failed AS failed_executions,
       b.period_start, b.period_end,
       now() AS calculated_at
FROM products p
JOIN repositories r ON r.id = p.repository_id AND r.kpi_enabled
CROSS JOIN bounds b
WHERE p.completed + p.failed > 0
"""

VALUE_CHECK = "ck_kpi_snapshots_value_finite"
VALUE_CHECK_SQL = "value IS NULL OR value NOT IN ('NaN', 'Infinity', '-Infinity')"

# (index name, table, column, predicate): built CONCURRENTLY on the live source table.
SOURCE_INDEXES = (
    (
        "kpictl_workflow_executions_running_started_at",
        "workflow_executions",
        "started_at",
        "status = 'running'",
    ),
)


def upgrade() -> None:
    PARTS._replace_views(FACTORY_VIEW, PRODUCT_VIEW)
    # An adopted database may have it already (adoption adds kpictl's current constraints);
    # rows from before (the platform's NaN) keep it NOT VALID until a DBA cleans them.
    op.execute(
        f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{VALUE_CHECK}'
                 AND conrelid = 'kpi_snapshots'::regclass) THEN
    ALTER TABLE kpi_snapshots ADD CONSTRAINT {VALUE_CHECK} CHECK ({VALUE_CHECK_SQL}) NOT VALID;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM kpi_snapshots WHERE NOT ({VALUE_CHECK_SQL})) THEN
    ALTER TABLE kpi_snapshots VALIDATE CONSTRAINT {VALUE_CHECK};
  END IF;
END
$$"""
    )
    with op.get_context().autocommit_block():
        for name, table, column, predicate in SOURCE_INDEXES:
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column}) "
                f"WHERE {predicate}"
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _table, _column, _predicate in SOURCE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"ALTER TABLE kpi_snapshots DROP CONSTRAINT IF EXISTS {VALUE_CHECK}")
    PARTS._replace_views(PARTS.FACTORY_VIEW, PARTS.PRODUCT_VIEW)
