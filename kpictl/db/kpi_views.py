"""The current definition of the two materialized views, built from the KPI rules
(`kpictl/db/kpi_rules.py`): `mv_factory_kpis_24h` and `mv_product_kpis_7d`.

Both views add up the hourly parts (`kpi_hourly_runs`, `kpi_hourly_totals`) for the full UTC
hours of their window that kpictl keeps, and read the rest of the window (its partial hours at
the edges, or all of it when nothing is kept) from the source tables, exactly as the pipeline's
product and factory levels do (`services/pipeline/hourly_parts.py`, `PartsScan.window`): the
views and the snapshots of the same period agree. Beside kpictl's own columns they keep every
column the AFU-9 platform's views of the same names offered (docs/spec/adoption.md, "Exact
shapes"), computed by kpictl's definitions.

Revisions are history: the revision that creates these views keeps the SQL it shipped with, and
`tests/services/pipeline/test_kpi_rules.py` proves that the newest one (today 0009, with 0004's
`SPANS`) ships exactly this SQL. `kpictl migrate` recreates a missing view from here. To change
a view or a rule it uses, see docs/ARCHITECTURE.md ("How to add a KPI / a revision");
`python -m kpictl.db.kpi_views` prints the constants to freeze into the new revision.
"""

from __future__ import annotations

from kpictl.db.kpi_rules import (
    decided,
    edges,
    hour_of,
    in_period,
    mean,
    outcome_count,
    percent,
    run_parts,
    runs_per_day_over_days,
    terminal_run,
)

FACTORY_VIEW_NAME = "mv_factory_kpis_24h"
PRODUCT_VIEW_NAME = "mv_product_kpis_7d"
MATERIALIZED_VIEWS = (FACTORY_VIEW_NAME, PRODUCT_VIEW_NAME)
FACTORY_VIEW_HOURS = 24
PRODUCT_VIEW_HOURS = 168

# view -> (its unique index, which REFRESH ... CONCURRENTLY needs; the index's SQL)
UNIQUE_INDEXES = {
    FACTORY_VIEW_NAME: (
        "ux_mv_factory_kpis_24h",
        "CREATE UNIQUE INDEX ux_mv_factory_kpis_24h ON mv_factory_kpis_24h (id)",
    ),
    PRODUCT_VIEW_NAME: (
        "ux_mv_product_kpis_7d",
        "CREATE UNIQUE INDEX ux_mv_product_kpis_7d ON mv_product_kpis_7d (repository_id)",
    ),
}


def _platform_percent(expression: str) -> str:
    """The AFU-9 platform's `success_rate_pct`: the rate rounded to 2 decimals."""
    return f"round({expression}, 2)"


def _bounds(hours: int) -> str:
    return f"""bounds AS (
  SELECT now() - interval '{hours} hours' AS period_start, now() AS period_end
)"""


# The window [period_start, period_end) split into the full UTC hours kpictl keeps parts for
# ([parts_from, parts_to)) and the rest, read from the source tables. No parts in the window:
# parts_from = parts_to = period_end, and everything is read from the sources. (The Python side
# of the same split: `hourly_parts.PartsScan.window`.)
SPANS = f"""
spans AS (
  SELECT b.period_start, b.period_end,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.lo ELSE b.period_end END AS parts_from,
         CASE WHEN p.kept AND p.lo < p.hi THEN p.hi ELSE b.period_end END AS parts_to
  FROM bounds b,
  LATERAL (
    SELECT greatest({hour_of("b.period_start - interval '1 microsecond'")} + interval '1 hour',
                    min(h.hour)) AS lo,
           least({hour_of("b.period_end")},
                 max(h.hour) + interval '1 hour') AS hi,
           count(*) > 0 AS kept
    FROM kpi_hourly_totals h
  ) p
)"""

KEPT_HOURS = in_period("h.hour", "s.parts_from", "s.parts_to")

# The window's two ranges outside its kept hours (each an index-only scan of a covering index).
EDGES = edges("s.period_start", "s.parts_from", "s.parts_to", "s.period_end")

# The terminal runs of the window outside its kept hours.
RAW_RUNS = f"""
  FROM spans s
  CROSS JOIN {EDGES}
  JOIN workflow_executions e ON {in_period("e.completed_at", "edge.lo", "edge.hi")}
  WHERE {terminal_run("e")}"""

RAW_RUN_PARTS = run_parts("e.started_at", "e.completed_at", valid=None)

FACTORY_VIEW = f"""
CREATE MATERIALIZED VIEW {FACTORY_VIEW_NAME} AS
WITH {_bounds(FACTORY_VIEW_HOURS)},
{SPANS},
parts AS (
  SELECT coalesce(sum(h.completed), 0) AS completed, coalesce(sum(h.failed), 0) AS failed,
         sum(h.duration_sum_ms) AS duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE {KEPT_HOURS}
  UNION ALL
  SELECT {RAW_RUN_PARTS}
  {RAW_RUNS}
),
run_totals AS (
  SELECT CAST(sum(completed) + sum(failed) AS bigint) AS terminal_runs,
         CAST(sum(completed) AS bigint) AS completed_runs,
         CAST(sum(failed) AS bigint) AS failed_runs,
         {mean("sum(duration_sum_ms)", "nullif(sum(completed) + sum(failed), 0)")} AS mtti_ms
  FROM parts
),
verdict_parts AS (
  SELECT coalesce(sum(h.accepted), 0) AS accepted,
         coalesce(sum(h.accepted + h.overridden + h.escalated), 0) AS decided
  FROM kpi_hourly_totals h, spans s
  WHERE {KEPT_HOURS}
  UNION ALL
  SELECT {outcome_count("accepted")}, count(*)
  FROM spans s
  CROSS JOIN {EDGES}
  JOIN verdict_outcomes v ON {in_period("v.decided_at", "edge.lo", "edge.hi")}
  WHERE {decided("v")}
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
       {percent("t.completed_runs", "nullif(t.terminal_runs, 0)")} AS success_rate,
       t.mtti_ms,
       {runs_per_day_over_days("t.terminal_runs", FACTORY_VIEW_HOURS // 24)} AS runs_per_day,
       v.accepted AS verdicts_accepted, v.decided AS verdicts_decided,
       {percent("v.accepted", "nullif(v.decided, 0)")} AS steering_accuracy,
       -- the AFU-9 platform's columns, by kpictl's definitions
       {_platform_percent(percent("t.completed_runs", "nullif(t.terminal_runs, 0)"))} AS success_rate_pct,
       t.terminal_runs AS total_executions,
       t.completed_runs AS completed_executions,
       t.failed_runs AS failed_executions,
       r.running_runs AS running_executions,
       t.mtti_ms AS avg_duration_ms,
       now() AS calculated_at
FROM bounds b, run_totals t, verdicts v, running r
"""

_PRODUCT_TERMINAL = "(p.completed + p.failed)"
_PRODUCT_RUNS_PER_DAY = runs_per_day_over_days(_PRODUCT_TERMINAL, PRODUCT_VIEW_HOURS // 24)
_PRODUCT_SUCCESS_RATE = percent("p.completed", _PRODUCT_TERMINAL)

PRODUCT_VIEW = f"""
CREATE MATERIALIZED VIEW {PRODUCT_VIEW_NAME} AS
WITH {_bounds(PRODUCT_VIEW_HOURS)},
{SPANS},
parts AS (
  SELECT h.repository_id, h.completed, h.failed, h.duration_sum_ms
  FROM kpi_hourly_runs h, spans s
  WHERE {KEPT_HOURS}
  UNION ALL
  SELECT e.repository_id, {RAW_RUN_PARTS}
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
       {_PRODUCT_SUCCESS_RATE} AS success_rate,
       {_PRODUCT_RUNS_PER_DAY} AS runs_per_day,
       {mean("p.duration_sum_ms", _PRODUCT_TERMINAL)} AS avg_duration_ms,
       -- the AFU-9 platform's columns, by kpictl's definitions
       r.owner || '/' || r.name AS product_name,
       {_platform_percent(_PRODUCT_SUCCESS_RATE)} AS success_rate_pct,
       {_PRODUCT_RUNS_PER_DAY} AS daily_throughput,
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

VIEWS = {FACTORY_VIEW_NAME: FACTORY_VIEW, PRODUCT_VIEW_NAME: PRODUCT_VIEW}


def frozen_source() -> str:
    """The views' current SQL as the constants a revision that recreates them freezes (the
    names `tests/services/pipeline/test_kpi_rules.py` compares with this module)."""
    constants = {"SPANS": SPANS, "FACTORY_VIEW": FACTORY_VIEW, "PRODUCT_VIEW": PRODUCT_VIEW}
    return "\n\n".join(f'{name} = """{sql}"""' for name, sql in constants.items()) + "\n"


if __name__ == "__main__":
    print(frozen_source(), end="")
