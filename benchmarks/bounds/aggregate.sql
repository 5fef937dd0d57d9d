-- Lower bound for `kpictl aggregate`: the same KPIs written by hand, no client logic.
-- One INSERT ... SELECT per run-level KPI, one GROUP BY per level. Parameters: %(start)s,
-- %(end)s (the period); %(since)s restricts the run level to the runs completed since then (the
-- new runs of the incremental case; the period start from scratch). Product and factory values
-- depend on every run of the window, so their GROUP BYs always cover it.
INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'run_duration', 'run', e.id, extract(epoch FROM e.completed_at - e.started_at) * 1000, 'ms',
       e.started_at, e.completed_at
FROM workflow_executions e
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  AND e.completed_at >= %(since)s;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'token_usage', 'run', e.id,
       sum(coalesce(a.total_tokens, coalesce(a.prompt_tokens, 0) + coalesce(a.completion_tokens, 0))),
       'tokens', e.started_at, e.completed_at
FROM workflow_executions e JOIN agent_runs a ON a.execution_id = e.id
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  AND e.completed_at >= %(since)s
GROUP BY e.id;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'tool_call_success_rate', 'run', e.id,
       100.0 * count(*) FILTER (WHERE t.error IS NULL) / count(*), 'percent',
       e.started_at, e.completed_at
FROM workflow_executions e JOIN mcp_tool_calls t ON t.execution_id = e.id
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  AND e.completed_at >= %(since)s
GROUP BY e.id;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT k.kpi_name, 'product', g.repository_id, k.value, k.unit, %(start)s, %(end)s
FROM (
  SELECT e.repository_id, count(*) FILTER (WHERE e.status = 'completed') AS completed,
         count(*) AS terminal, sum(extract(epoch FROM e.completed_at - e.started_at) * 1000) AS duration
  FROM workflow_executions e JOIN repositories r ON r.id = e.repository_id AND r.kpi_enabled
  WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
    AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  GROUP BY e.repository_id
) g
CROSS JOIN LATERAL (VALUES
  ('product_success_rate', 'percent', 100.0 * g.completed / g.terminal),
  ('product_throughput', 'runs_per_day', g.terminal * 86400.0 / extract(epoch FROM %(end)s::timestamptz - %(start)s::timestamptz)),
  ('product_avg_duration', 'ms', g.duration / g.terminal)
) k(kpi_name, unit, value)
ON CONFLICT DO NOTHING;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT k.kpi_name, 'factory', NULL, k.value, k.unit, %(start)s, %(end)s
FROM (
  SELECT count(*) FILTER (WHERE e.status = 'completed') AS completed, count(*) AS terminal,
         sum(extract(epoch FROM e.completed_at - e.started_at) * 1000) AS duration
  FROM workflow_executions e
  WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
    AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
) g,
(SELECT count(*) FILTER (WHERE outcome = 'accepted') AS accepted, count(*) AS decided
 FROM verdict_outcomes
 WHERE outcome IN ('accepted', 'overridden', 'escalated')
   AND decided_at >= %(start)s AND decided_at < %(end)s) v
CROSS JOIN LATERAL (VALUES
  ('mtti', 'ms', g.duration / nullif(g.terminal, 0)),
  ('success_rate', 'percent', 100.0 * g.completed / nullif(g.terminal, 0)),
  ('factory_throughput', 'runs_per_day', g.terminal * 86400.0 / extract(epoch FROM %(end)s::timestamptz - %(start)s::timestamptz)),
  ('steering_accuracy', 'percent', 100.0 * v.accepted / nullif(v.decided, 0))
) k(kpi_name, unit, value)
ON CONFLICT DO NOTHING;
