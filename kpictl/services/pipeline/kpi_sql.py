"""The KPI SQL of docs/spec/pipeline.md §3, one set-based statement per step: the source clock,
the product and factory levels, the plan; the run level's chunk is `run_level_sql.py`.

Statements are `text()` with bound values. The only pieces formatted into them are column
expressions chosen from a fixed set by the source columns' types (`SourceClock`): zone-less
`timestamp` columns hold UTC (or `KPICTL_SOURCE_TIMEZONE`) wall-clock values and are converted
with `AT TIME ZONE`, while filters compare the raw column with a converted bound so that the
range stays sargable on the source's indexes.

The KPI rules themselves (the terminal-run rule, half-open periods, the duration, the formulas,
the units from the registry) are fragments of `kpictl/db/kpi_rules.py`, shared with the hourly
parts, the adoption's trigger and the materialized views; this module only composes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import TextClause

from kpictl.db import kpi_rules as rules
from kpictl.db import kpi_views

ZONED = "timestamp with time zone"
SOURCE_ZONE = "CAST(:source_tz AS text)"  # the source zone, bound


@dataclass(frozen=True)
class SourceClock:
    """Whether each source timestamp column is zone-less (`timestamp`) or `timestamptz`."""

    started_zoneless: bool
    completed_zoneless: bool
    decided_zoneless: bool

    @classmethod
    def detect(cls, connection: Connection) -> SourceClock:
        """Read once per connection (cached in its `info`): the types do not change mid-run."""
        cached = connection.info.get("kpictl_source_clock")
        if cached is None:
            cached = connection.info["kpictl_source_clock"] = cls._read(connection)
        return cached

    @classmethod
    def _read(cls, connection: Connection) -> SourceClock:
        rows = connection.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND (table_name, column_name) IN "
                "(('workflow_executions', 'started_at'), ('workflow_executions', 'completed_at'), "
                "('verdict_outcomes', 'decided_at'))"
            )
        ).all()
        types = {(table, column): data_type for table, column, data_type in rows}
        return cls(
            started_zoneless=types.get(("workflow_executions", "started_at"), ZONED) != ZONED,
            completed_zoneless=types.get(("workflow_executions", "completed_at"), ZONED) != ZONED,
            decided_zoneless=types.get(("verdict_outcomes", "decided_at"), ZONED) != ZONED,
        )

    def fragments(self) -> dict[str, str]:
        def instant(column: str, zoneless: bool) -> str:
            return rules.at_source_zone(column, zoneless, SOURCE_ZONE)

        def bound(name: str, zoneless: bool) -> str:
            return rules.at_source_zone(f"CAST(:{name} AS timestamptz)", zoneless, SOURCE_ZONE)

        fragments = {
            "started": instant("e.started_at", self.started_zoneless),
            "completed": instant("e.completed_at", self.completed_zoneless),
            "decided": instant("v.decided_at", self.decided_zoneless),
            "s_lo": bound("period_start", self.started_zoneless),
            "s_hi": bound("period_end", self.started_zoneless),
        }
        # c_*: bounds on completed_at, d_*: on decided_at, for each named instant parameter
        for key, name in BOUND_PARAMETERS.items():
            fragments[f"c_{key}"] = bound(name, self.completed_zoneless)
            fragments[f"d_{key}"] = bound(name, self.decided_zoneless)
        return fragments


# Instant parameters that statements compare source timestamps with (fragment key: name).
BOUND_PARAMETERS = {
    "lo": "period_start",
    "hi": "period_end",
    "scan": "scan_from",
    "pfrom": "parts_from",  # the window's hours read from the hourly parts: [parts_from, parts_to)
    "pto": "parts_to",
    "cov": "covered_from",  # hourly parts maintenance (hourly_parts.py)
    "hfrom": "hours_from",
    "hto": "hours_to",
}


def clocked_sql(template: str, clock: SourceClock) -> TextClause:
    """`template` with the clock's column expressions and bounds formatted in."""
    return text(template.format(**clock.fragments()))


TERMINAL = rules.terminal_run("e")
TERMINAL_STATUS = rules.terminal_status("e")

# A terminal-status run without a usable completed_at (NULL, or infinite: no period contains
# it) is placed by its started_at and counted invalid. Two sargable branches: the NULLs from
# the partial kpictl_* index, the two infinities from the completed_at index.
NO_COMPLETION = "(e.completed_at IS NULL OR e.completed_at IN ('infinity', '-infinity'))"

IN_PERIOD = rules.in_period("e.completed_at", "{c_lo}", "{c_hi}")

# The parts of the period outside [parts_from, parts_to), read from the source rows: two
# ranges, each an index-only scan of the covering completed_at (decided_at) index (0009).
RUNS_OUTSIDE_PARTS = f"""{rules.edges("{c_lo}", "{c_pfrom}", "{c_pto}", "{c_hi}")}
  JOIN workflow_executions e ON {rules.in_period("e.completed_at", "edge.lo", "edge.hi")}"""
VERDICTS_OUTSIDE_PARTS = f"""{rules.edges("{d_lo}", "{d_pfrom}", "{d_pto}", "{d_hi}")}
    JOIN verdict_outcomes v ON {rules.in_period("v.decided_at", "edge.lo", "edge.hi")}"""

UPSERT = """ON CONFLICT ON CONSTRAINT uq_kpi_snapshots_key DO UPDATE
    SET value = EXCLUDED.value, unit = EXCLUDED.unit, metadata = EXCLUDED.metadata,
        calculated_at = EXCLUDED.calculated_at, job_id = EXCLUDED.job_id"""


def plan(clock: SourceClock) -> TextClause:
    """Counts for --dry-run: the period's terminal runs, invalid runs and products."""
    return clocked_sql(
        f"""
SELECT
  count(*) FILTER (WHERE valid AND in_period) AS terminal_runs,
  count(*) FILTER (WHERE NOT valid) AS invalid_runs,
  count(DISTINCT repository_id) FILTER (WHERE valid AND in_period AND product_enabled) AS products
FROM (
  SELECT e.repository_id,
         ({TERMINAL}) AS valid,
         coalesce({IN_PERIOD}, false) AS in_period,
         EXISTS (SELECT 1 FROM repositories r WHERE r.id = e.repository_id AND r.kpi_enabled)
           AS product_enabled
  FROM workflow_executions e
  WHERE {TERMINAL_STATUS}
    AND (({IN_PERIOD})
         OR ({NO_COMPLETION} AND e.started_at >= {{s_lo}} AND e.started_at < {{s_hi}}))
) runs
""",
        clock,
    )


def invalid_without_completion(clock: SourceClock) -> TextClause:
    """Terminal-status runs of the period with no completed_at (placed by started_at): left out
    of every KPI and counted as invalid. The runs with a completed_at are counted in the parts."""
    return clocked_sql(
        f"SELECT count(*) FROM workflow_executions e WHERE {TERMINAL_STATUS} "
        f"AND {NO_COMPLETION} AND e.started_at >= {{s_lo}} AND e.started_at < {{s_hi}}",
        clock,
    )


PARTS_TABLE = "kpictl_period_parts"


def collect_parts(clock: SourceClock) -> list[TextClause]:
    """Additive parts per repository (NULL and disabled repositories included) into a
    session temp table: the product step writes from it, the factory step rolls it up.

    The window's full hours in [parts_from, parts_to) come from `kpi_hourly_runs`, the rest of
    it from the runs themselves (parts_from = parts_to = period_end: all from the runs)."""
    return [
        text(
            f"CREATE TEMP TABLE IF NOT EXISTS {PARTS_TABLE} ("
            "repository_id uuid, product_enabled boolean, completed bigint, failed bigint, "
            "duration_sum_ms numeric, invalid bigint) ON COMMIT PRESERVE ROWS"
        ),
        text(f"TRUNCATE {PARTS_TABLE}"),
        clocked_sql(
            f"""
INSERT INTO {PARTS_TABLE}
SELECT x.repository_id, coalesce(bool_or(r.kpi_enabled), false),
       sum(x.completed), sum(x.failed), sum(x.duration_sum_ms), sum(x.invalid)
FROM (
  SELECT h.repository_id, h.completed, h.failed, h.duration_sum_ms, h.invalid
  FROM kpi_hourly_runs h
  WHERE h.hour >= CAST(:parts_from AS timestamptz) AND h.hour < CAST(:parts_to AS timestamptz)
  UNION ALL
  SELECT e.repository_id,
         {rules.run_parts("{started}", "{completed}")}
  FROM {RUNS_OUTSIDE_PARTS}
  {rules.VALID_RUN}
  WHERE {TERMINAL_STATUS}
  GROUP BY e.repository_id
) x
LEFT JOIN repositories r ON r.id = x.repository_id
GROUP BY x.repository_id
""",
            clock,
        ),
    ]


def parts_summary() -> TextClause:
    return text(
        "SELECT count(*) FILTER (WHERE product_enabled AND repository_id IS NOT NULL "
        "AND completed + failed > 0) AS products, coalesce(sum(invalid), 0) AS invalid "
        f"FROM {PARTS_TABLE}"
    )


# The period's length, bound in seconds.
PERIOD_SECONDS = "CAST(:period_seconds AS numeric)"


def product_level() -> TextClause:
    terminal = "(p.completed + p.failed)"
    return text(
        f"""
WITH written AS (
  INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, metadata,
                             calculated_at, period_start, period_end, job_id)
  SELECT k.kpi_name, :version, 'product', p.repository_id, k.value, k.unit,
         {rules.run_parts_metadata("p")},
         now(), :period_start, :period_end, CAST(:job_id AS uuid)
  FROM {PARTS_TABLE} p
  CROSS JOIN LATERAL (VALUES
    (:product_success_rate, {rules.unit("product_success_rate")},
       {rules.percent("p.completed", terminal)}),
    (:product_throughput, {rules.unit("product_throughput")},
       {rules.runs_per_day(terminal, PERIOD_SECONDS)}),
    (:product_avg_duration, {rules.unit("product_avg_duration")},
       {rules.mean("p.duration_sum_ms", terminal)})
  ) AS k(kpi_name, unit, value)
  WHERE p.product_enabled AND p.repository_id IS NOT NULL AND p.completed + p.failed > 0
  {UPSERT}
  RETURNING 1
)
SELECT count(*) FROM written
"""
    )


def factory_level(clock: SourceClock) -> TextClause:
    some_runs = "nullif(runs.completed + runs.failed, 0)"  # NULL: no data (a NULL value)
    some_verdicts = "nullif(verdicts.accepted + verdicts.overridden + verdicts.escalated, 0)"
    return clocked_sql(
        f"""
WITH runs AS (
  SELECT coalesce(sum(completed), 0) AS completed, coalesce(sum(failed), 0) AS failed,
         sum(duration_sum_ms) AS duration_sum_ms
  FROM {PARTS_TABLE}
),
verdicts AS (
  SELECT CAST(coalesce(sum(accepted), 0) AS bigint) AS accepted,
         CAST(coalesce(sum(overridden), 0) AS bigint) AS overridden,
         CAST(coalesce(sum(escalated), 0) AS bigint) AS escalated
  FROM (
    SELECT h.accepted, h.overridden, h.escalated
    FROM kpi_hourly_totals h
    WHERE h.hour >= CAST(:parts_from AS timestamptz) AND h.hour < CAST(:parts_to AS timestamptz)
    UNION ALL
    SELECT {rules.verdict_parts("v")}
    FROM {VERDICTS_OUTSIDE_PARTS}
    WHERE {rules.decided("v")}
  ) parts
),
written AS (
  INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, metadata,
                             calculated_at, period_start, period_end, job_id)
  SELECT k.kpi_name, :version, 'factory', NULL, k.value, k.unit, k.metadata,
         now(), :period_start, :period_end, CAST(:job_id AS uuid)
  FROM runs, verdicts,
  LATERAL (SELECT {rules.run_parts_metadata("runs")} AS run_parts,
                  {rules.verdict_parts_metadata("verdicts")} AS verdict_parts) parts,
  LATERAL (VALUES
    (:mtti, {rules.unit("mtti")}, {rules.mean("runs.duration_sum_ms", some_runs)},
       parts.run_parts),
    (:success_rate, {rules.unit("success_rate")}, {rules.percent("runs.completed", some_runs)},
       parts.run_parts),
    (:factory_throughput, {rules.unit("factory_throughput")},
       {rules.runs_per_day("(runs.completed + runs.failed)", PERIOD_SECONDS)}, parts.run_parts),
    (:steering_accuracy, {rules.unit("steering_accuracy")},
       {rules.percent("verdicts.accepted", some_verdicts)}, parts.verdict_parts)
  ) AS k(kpi_name, unit, value, metadata)
  {UPSERT}
  RETURNING 1
)
SELECT count(*) FROM written
""",
        clock,
    )


def bucket_computed() -> TextClause:
    """Has this exact period a factory snapshot computed after it was over (backfill resume)?

    A snapshot calculated before `period_end + :settled` (the look-back for runs recorded a
    little after they completed) saw only part of the bucket's runs: it does not count, so the
    next backfill computes the bucket again."""
    return text(
        "SELECT EXISTS (SELECT 1 FROM kpi_snapshots WHERE level = 'factory' "
        "AND kpi_name = :factory_throughput AND kpi_version = :version AND scope_id IS NULL "
        "AND period_start = :period_start AND period_end = :period_end "
        "AND calculated_at >= CAST(:period_end AS timestamptz) + CAST(:settled AS interval))"
    )


MATERIALIZED_VIEWS = kpi_views.MATERIALIZED_VIEWS


def refresh_view(name: str) -> TextClause:
    # An identifier cannot be bound: only the names above ever reach the SQL.
    if name not in MATERIALIZED_VIEWS:
        raise ValueError(f"not a kpictl materialized view: {name!r}")
    return text(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {name}")
