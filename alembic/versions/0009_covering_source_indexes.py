"""Covering source indexes: the run and verdict columns a cycle reads beside the timestamp.

1. A cycle reads the runs of the window's partial edge hours and of the hours it recomputes by
   `completed_at`, and of those runs only `status`, `started_at` and `repository_id`; the
   verdicts by `decided_at`, and only `outcome`. With those columns in the index the reads are
   index-only scans: what they cost no longer depends on how the platform's table lays the runs
   out (every run of an hour on a heap page of its own, at worst). The narrow indexes of 0002
   are dropped once the covering ones are built: every lookup they served uses the covering
   ones.
2. Both materialized views are recreated with the same columns and values; they read the two
   edges of their window as two ranges (`kpi_rules.edges`), each an index-only scan, instead of
   one OR of the two (a bitmap scan, which reads the table, or with the wider index a
   sequential scan of it). The factory view counts the running runs of its window on a range
   of the partial index by started_at (it read every running run ever, stale ones included).

Both are built and dropped CONCURRENTLY: the platform goes on writing. An interrupted build
leaves an INVALID index that the next `kpictl migrate` rebuilds (and `kpictl doctor` reports).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
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
PREVIOUS = _sibling("0005_platform_columns.py")  # the views this revision replaces

# (index name, table, column, predicate, include): built CONCURRENTLY on the live source table.
SOURCE_INDEXES = (
    (
        "kpictl_workflow_executions_completed_cover",
        "workflow_executions",
        "completed_at",
        None,
        "status, started_at, repository_id",
    ),
    ("kpictl_verdict_outcomes_decided_cover", "verdict_outcomes", "decided_at", None, "outcome"),
)
# 0002's indexes that the covering ones replace (rebuilt by a downgrade).
DROPPED_SOURCE_INDEXES = (
    "kpictl_workflow_executions_completed_at",
    "kpictl_verdict_outcomes_decided_at",
)
NARROW = (
    ("kpictl_workflow_executions_completed_at", "workflow_executions", "completed_at"),
    ("kpictl_verdict_outcomes_decided_at", "verdict_outcomes", "decided_at"),
)


FACTORY_VIEW = """
CREATE MATERIALIZED VIEW mv_factory_kpis_24h AS
WITH bounds AS (
  SELECT now() - interval '24 hours' AS period_start, now() AS period_end
),

spans AS (
  SELECT b.period_start, b.period_end,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.lo ELSE b.period_end END AS parts_from,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.hi ELSE b.period_end END AS parts_to
  FROM bounds b,
  LATERAL (
    SELECT greatest(date_bin('1 hour', b.period_start - interval '1 microsecond', TIMESTAMPTZ '2000-01-01 00:00:00+00') + interval '1 hour',
                    min(h.hour)) AS lo,
           least(date_bin('1 hour', b.period_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                 max(h.hour) + interval '1 hour') AS hi,
           count(*) > 0 AS kept
    FROM kpi_hourly_totals h
  ) p
),
parts AS (
  SELECT coalesce(sum(h.completed), 0) AS completed, coalesce(sum(h.failed), 0) AS failed,
         sum(h.duration_sum_ms) AS duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE h.hour >= s.parts_from AND h.hour < s.parts_to
  UNION ALL
  SELECT count(*) FILTER (WHERE e.status = 'completed'),
       count(*) FILTER (WHERE e.status = 'failed'),
       sum(extract(epoch FROM e.completed_at - e.started_at) * 1000)
  FROM spans s
  CROSS JOIN LATERAL (VALUES (s.period_start, s.parts_from), (s.parts_to, s.period_end)) AS edge(lo, hi)
  JOIN workflow_executions e ON e.completed_at >= edge.lo AND e.completed_at < edge.hi
  WHERE e.status IN ('completed', 'failed')
    AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
    AND isfinite(e.started_at) AND isfinite(e.completed_at)
    AND e.completed_at >= e.started_at
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
  FROM spans s
  CROSS JOIN LATERAL (VALUES (s.period_start, s.parts_from), (s.parts_to, s.period_end)) AS edge(lo, hi)
  JOIN verdict_outcomes v ON v.decided_at >= edge.lo AND v.decided_at < edge.hi
  WHERE v.outcome IN ('accepted', 'overridden', 'escalated')
),
verdicts AS (
  SELECT CAST(sum(accepted) AS bigint) AS accepted, CAST(sum(decided) AS bigint) AS decided
  FROM verdict_parts
),
running AS (
  SELECT count(*) AS running_runs
  FROM workflow_executions e
  WHERE e.status = 'running' AND e.started_at >= (SELECT period_start FROM bounds)
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

PRODUCT_VIEW = """
CREATE MATERIALIZED VIEW mv_product_kpis_7d AS
WITH bounds AS (
  SELECT now() - interval '168 hours' AS period_start, now() AS period_end
),

spans AS (
  SELECT b.period_start, b.period_end,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.lo ELSE b.period_end END AS parts_from,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.hi ELSE b.period_end END AS parts_to
  FROM bounds b,
  LATERAL (
    SELECT greatest(date_bin('1 hour', b.period_start - interval '1 microsecond', TIMESTAMPTZ '2000-01-01 00:00:00+00') + interval '1 hour',
                    min(h.hour)) AS lo,
           least(date_bin('1 hour', b.period_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
                 max(h.hour) + interval '1 hour') AS hi,
           count(*) > 0 AS kept
    FROM kpi_hourly_totals h
  ) p
),
parts AS (
  SELECT h.repository_id, h.completed, h.failed, h.duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE h.hour >= s.parts_from AND h.hour < s.parts_to
  UNION ALL
  SELECT e.repository_id, count(*) FILTER (WHERE e.status = 'completed'),
       count(*) FILTER (WHERE e.status = 'failed'),
       sum(extract(epoch FROM e.completed_at - e.started_at) * 1000)
  FROM spans s
  CROSS JOIN LATERAL (VALUES (s.period_start, s.parts_from), (s.parts_to, s.period_end)) AS edge(lo, hi)
  JOIN workflow_executions e ON e.completed_at >= edge.lo AND e.completed_at < edge.hi
  WHERE e.status IN ('completed', 'failed')
    AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
    AND isfinite(e.started_at) AND isfinite(e.completed_at)
    AND e.completed_at >= e.started_at
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


def upgrade() -> None:
    PARTS._replace_views(FACTORY_VIEW, PRODUCT_VIEW)
    with op.get_context().autocommit_block():
        for name, table, column, _predicate, include in SOURCE_INDEXES:
            op.execute(
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column}) "
                f"INCLUDE ({include})"
            )
        for name in DROPPED_SOURCE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    PARTS._replace_views(PREVIOUS.FACTORY_VIEW, PREVIOUS.PRODUCT_VIEW)
    with op.get_context().autocommit_block():
        for name, table, column in NARROW:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})")
        for name, *_definition in SOURCE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
