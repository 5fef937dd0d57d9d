-- Lower bound for `kpictl backfill --bucket day` over [%(start)s, %(end)s): every run's run-level
-- KPIs and, per UTC day, the product and factory GROUP BYs, written by hand.
INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'run_duration', 'run', e.id, extract(epoch FROM e.completed_at - e.started_at) * 1000, 'ms',
       e.started_at, e.completed_at
FROM workflow_executions e
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'token_usage', 'run', e.id,
       sum(coalesce(a.total_tokens, coalesce(a.prompt_tokens, 0) + coalesce(a.completion_tokens, 0))),
       'tokens', e.started_at, e.completed_at
FROM workflow_executions e JOIN agent_runs a ON a.execution_id = e.id
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
GROUP BY e.id;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT 'tool_call_success_rate', 'run', e.id,
       100.0 * count(*) FILTER (WHERE t.error IS NULL) / count(*), 'percent',
       e.started_at, e.completed_at
FROM workflow_executions e JOIN mcp_tool_calls t ON t.execution_id = e.id
WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
  AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
GROUP BY e.id;

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT k.kpi_name, 'product', g.repository_id, k.value, k.unit, g.day, g.day + interval '1 day'
FROM (
  SELECT date_trunc('day', e.completed_at) AS day, e.repository_id,
         count(*) FILTER (WHERE e.status = 'completed') AS completed, count(*) AS terminal,
         sum(extract(epoch FROM e.completed_at - e.started_at) * 1000) AS duration
  FROM workflow_executions e JOIN repositories r ON r.id = e.repository_id AND r.kpi_enabled
  WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
    AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  GROUP BY 1, 2
) g
CROSS JOIN LATERAL (VALUES
  ('product_success_rate', 'percent', 100.0 * g.completed / g.terminal),
  ('product_throughput', 'runs_per_day', g.terminal::numeric),
  ('product_avg_duration', 'ms', g.duration / g.terminal)
) k(kpi_name, unit, value);

INSERT INTO kpi_snapshots (kpi_name, level, scope_id, value, unit, period_start, period_end)
SELECT k.kpi_name, 'factory', NULL, k.value, k.unit, d.day, d.day + interval '1 day'
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 day', interval '1 day') d(day)
LEFT JOIN (
  SELECT date_trunc('day', e.completed_at) AS day,
         count(*) FILTER (WHERE e.status = 'completed') AS completed, count(*) AS terminal,
         sum(extract(epoch FROM e.completed_at - e.started_at) * 1000) AS duration
  FROM workflow_executions e
  WHERE e.status IN ('completed', 'failed') AND e.started_at IS NOT NULL
    AND e.completed_at >= e.started_at AND e.completed_at >= %(start)s AND e.completed_at < %(end)s
  GROUP BY 1
) g ON g.day = d.day
LEFT JOIN (
  SELECT date_trunc('day', decided_at) AS day, count(*) FILTER (WHERE outcome = 'accepted') AS accepted,
         count(*) AS decided
  FROM verdict_outcomes
  WHERE outcome IN ('accepted', 'overridden', 'escalated')
    AND decided_at >= %(start)s AND decided_at < %(end)s
  GROUP BY 1
) v ON v.day = d.day
CROSS JOIN LATERAL (VALUES
  ('mtti', 'ms', g.duration / nullif(g.terminal, 0)),
  ('success_rate', 'percent', 100.0 * g.completed / nullif(g.terminal, 0)),
  ('factory_throughput', 'runs_per_day', coalesce(g.terminal, 0)::numeric),
  ('steering_accuracy', 'percent', 100.0 * v.accepted / nullif(v.decided, 0))
) k(kpi_name, unit, value);
