"""The pipeline's objects: materialized views over the source tables, kpictl_* source indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Terminal runs (docs/spec/pipeline.md §3), shared by both views.
TERMINAL = """e.status IN ('completed', 'failed')
      AND e.started_at IS NOT NULL AND e.completed_at IS NOT NULL
      AND e.completed_at >= e.started_at"""

FACTORY_VIEW = f"""
CREATE MATERIALIZED VIEW mv_factory_kpis_24h AS
WITH bounds AS (
  SELECT now() - interval '24 hours' AS period_start, now() AS period_end
),
runs AS (
  SELECT e.status, extract(epoch FROM e.completed_at - e.started_at) * 1000 AS duration_ms
  FROM workflow_executions e, bounds b
  WHERE {TERMINAL}
    AND e.completed_at >= b.period_start AND e.completed_at < b.period_end
),
run_totals AS (
  SELECT count(*) AS terminal_runs,
         count(*) FILTER (WHERE status = 'completed') AS completed_runs,
         count(*) FILTER (WHERE status = 'failed') AS failed_runs,
         avg(duration_ms) AS mtti_ms
  FROM runs
),
verdicts AS (
  SELECT count(*) FILTER (WHERE v.outcome = 'accepted') AS accepted,
         count(*) AS decided
  FROM verdict_outcomes v, bounds b
  WHERE v.outcome IN ('accepted', 'overridden', 'escalated')
    AND v.decided_at >= b.period_start AND v.decided_at < b.period_end
)
SELECT 1 AS id, b.period_start, b.period_end,
       t.terminal_runs, t.completed_runs, t.failed_runs,
       100.0 * t.completed_runs / nullif(t.terminal_runs, 0) AS success_rate,
       t.mtti_ms,
       t.terminal_runs::numeric AS runs_per_day,
       v.accepted AS verdicts_accepted, v.decided AS verdicts_decided,
       100.0 * v.accepted / nullif(v.decided, 0) AS steering_accuracy
FROM bounds b, run_totals t, verdicts v
"""

PRODUCT_VIEW = f"""
CREATE MATERIALIZED VIEW mv_product_kpis_7d AS
SELECT r.id AS repository_id,
       r.owner || '/' || r.name AS product,
       count(*) AS terminal_runs,
       count(*) FILTER (WHERE e.status = 'completed') AS completed_runs,
       count(*) FILTER (WHERE e.status = 'failed') AS failed_runs,
       100.0 * count(*) FILTER (WHERE e.status = 'completed') / count(*) AS success_rate,
       count(*) / 7.0 AS runs_per_day,
       avg(extract(epoch FROM e.completed_at - e.started_at) * 1000) AS avg_duration_ms
FROM workflow_executions e
JOIN repositories r ON r.id = e.repository_id AND r.kpi_enabled
WHERE {TERMINAL}
  AND e.completed_at >= now() - interval '7 days' AND e.completed_at < now()
GROUP BY r.id, r.owner, r.name
"""

# (index name, table, column): what the pipeline's lookups need on the platform's tables.
SOURCE_INDEXES = (
    ("kpictl_workflow_executions_completed_at", "workflow_executions", "completed_at"),
    ("kpictl_agent_runs_execution_id", "agent_runs", "execution_id"),
    ("kpictl_mcp_tool_calls_execution_id", "mcp_tool_calls", "execution_id"),
    ("kpictl_verdict_outcomes_decided_at", "verdict_outcomes", "decided_at"),
)


def upgrade() -> None:
    op.execute(FACTORY_VIEW)
    op.execute("CREATE UNIQUE INDEX ux_mv_factory_kpis_24h ON mv_factory_kpis_24h (id)")
    op.execute(PRODUCT_VIEW)
    op.execute("CREATE UNIQUE INDEX ux_mv_product_kpis_7d ON mv_product_kpis_7d (repository_id)")
    # Source tables are live: build their indexes without blocking the platform's writes.
    with op.get_context().autocommit_block():
        for name, table, column in SOURCE_INDEXES:
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({column})")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _table, _column in SOURCE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS mv_product_kpis_7d")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS mv_factory_kpis_24h")
