"""The targets of issue 17 (docs/PERFORMANCE.md, "Scaling"): retention by partition against a
bare DROP and against the batched DELETE; backfill and a from-scratch aggregate with --jobs
1, 2, 4 against the single-connection SQL bound; --full-refresh against from scratch; the next
cycle on a window of `next_cycle_runs` runs.

Run from `python -m benchmarks --only scaling` (with the other scenarios' --scale).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from benchmarks.run import NEW_RUNS, Bench, Row, load_runs, reset_sources
from kpictl.db import partitions
from kpictl.services.maintenance import retention
from kpictl.services.pipeline import periods
from kpictl.services.pipeline.periods import Period

SIZES = {
    # run snapshots a day for retention (90 days kept, 30 more expired); runs for backfill and
    # aggregate; runs in the 168 h window of the next-cycle scenario
    "small": {"rows_per_day": 20_000, "runs": 100_000, "next_cycle_runs": 300_000},
    "medium": {"rows_per_day": 100_000, "runs": 300_000, "next_cycle_runs": 1_000_000},
    "large": {"rows_per_day": 300_000, "runs": 1_000_000, "next_cycle_runs": 5_000_000},
}
KEPT_DAYS, EXPIRED_DAYS = 90, 30

RUN_ROWS = """
INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, calculated_at,
                           period_start, period_end)
SELECT 'run_duration', '1.0.0', 'run', md5('r' || d || '/' || g)::uuid, g % 100000, 'ms', t, t,
       t + interval '1 minute'
FROM generate_series(0, :days - 1) d, generate_series(1, :per_day) g,
     LATERAL (SELECT CAST(:oldest AS timestamptz) + d * interval '1 day'
                     + (g % 86000) * interval '1 second') AS at(t)
"""


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _load_days(bench: Bench, per_day: int, oldest: datetime, days: int) -> None:
    for first in range(0, days, 10):  # ten days a statement
        bench.sql(
            RUN_ROWS,
            days=min(10, days - first),
            per_day=per_day,
            oldest=oldest + timedelta(days=first),
        )


def _expired_days(bench: Bench, per_day: int, now: datetime) -> list[str]:
    """The EXPIRED_DAYS days before the KEPT_DAYS days of run rows, in their day partitions
    (made, loaded, vacuumed and checkpointed each time: every method starts from the same
    state); their names."""
    oldest = (now - timedelta(days=KEPT_DAYS + EXPIRED_DAYS)).replace(hour=0, minute=0, second=0)
    with bench.engine.begin() as conn:
        partitions.ensure(conn, "run", oldest, now)
    _load_days(bench, per_day, oldest, EXPIRED_DAYS)
    names = [
        partitions.containing("run", oldest + timedelta(days=day)).name
        for day in range(EXPIRED_DAYS)
    ]
    with bench.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {', '.join(names)}"))
    bench.checkpoint()
    return names


def batched_delete(bench: Bench, tables: list[str], cutoff: datetime) -> None:
    """What retention did before partitions: DELETEs of 10,000 rows, a transaction each, here
    planned on one partition at a time (retention's batch of before, run unchanged on the
    partitioned table, plans every partition and reads all of them per batch: 2.5 s a batch
    at the large size, about 40 minutes for these rows)."""
    for table in tables:
        while True:
            with bench.engine.begin() as conn:
                deleted = retention.delete_partition_batch(conn, table, "run", cutoff, 10_000)
            if deleted < 10_000:
                break


def retention_scenario(bench: Bench, scale: str) -> list[Row]:
    """KEPT_DAYS days of run rows loaded once; the EXPIRED_DAYS days before them loaded again
    for each of: kpictl's retention, a bare DROP TABLE, the batched DELETE of before."""
    per_day = SIZES[scale]["rows_per_day"]
    # at midnight the cut-off falls between two day partitions: the expired days go whole
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    policy = retention.make_policy(run_days=KEPT_DAYS)
    bench.sql("TRUNCATE kpi_snapshots")
    with bench.engine.begin() as conn:
        partitions.ensure(conn, "run", now - timedelta(days=KEPT_DAYS), now)
    _load_days(bench, per_day, now - timedelta(days=KEPT_DAYS), KEPT_DAYS)
    bench.vacuum()
    expired = _expired_days(bench, per_day, now)
    kpictl_s = timed(lambda: retention.apply_retention(bench.engine, policy, now=now))
    print(f"  retention: {kpictl_s:.2f} s", file=sys.stderr)
    expired = _expired_days(bench, per_day, now)
    drop_s = timed(lambda: bench.sql("DROP TABLE " + ", ".join(expired)))
    print(f"  DROP TABLE: {drop_s:.2f} s", file=sys.stderr)
    expired = _expired_days(bench, per_day, now)
    delete_s = timed(lambda: batched_delete(bench, expired, now - timedelta(days=KEPT_DAYS)))
    print(f"  batched DELETE: {delete_s:.2f} s", file=sys.stderr)
    scale_note = (
        f"{per_day * (KEPT_DAYS + EXPIRED_DAYS):,} run rows, {per_day * EXPIRED_DAYS:,} expired"
    )
    return [
        Row(
            "retention: 30 expired day partitions",
            scale_note,
            kpictl_s,
            drop_s,
            "bound: bare DROP TABLE",
        ),
        Row(
            "retention: the batched DELETE of before",
            scale_note,
            delete_s,
            kpictl_s,
            f"{delete_s / kpictl_s:.0f}x slower than dropping (ratio: delete / kpictl)",
        ),
    ]


def parallel_scenarios(bench: Bench, scale: str) -> list[Row]:
    runs = SIZES[scale]["runs"]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=30)
    reset_sources(bench)
    load_runs(bench, seed=3, days=30, runs_per_day=runs // 30, now=end)
    buckets = periods.buckets(start, end, "day", periods.zone("UTC"), end)

    def clear() -> None:
        bench.sql("TRUNCATE kpi_snapshots, kpi_aggregation_jobs")
        bench.checkpoint()

    clear()
    bound = timed(lambda: bench.run_script("backfill.sql", {"start": start, "end": end}))
    print(f"  backfill bound: {bound:.1f} s", file=sys.stderr)
    rows = []
    for jobs in (1, 2, 4):
        clear()
        seconds = timed(lambda jobs=jobs: bench.backfill(buckets, end, jobs=jobs))
        print(f"  backfill --jobs {jobs}: {seconds:.1f} s", file=sys.stderr)
        rows.append(Row(f"backfill 30 days, --jobs {jobs}", f"{runs:,} runs", seconds, bound))
    seconds = timed(lambda: bench.backfill(buckets, end, full_refresh=True))  # over --jobs 4's
    rows.append(
        Row(
            "backfill 30 days, --full-refresh",
            f"{runs:,} runs",
            seconds,
            rows[0].kpictl_s,
            "bound: the same from scratch",
        )
    )
    return rows + _aggregate_rows(bench, runs)


def _aggregate_rows(bench: Bench, runs: int) -> list[Row]:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    period = Period(end - timedelta(hours=168), end)
    reset_sources(bench)
    load_runs(bench, seed=1, days=7, runs_per_day=runs // 7, now=end)

    def clear() -> None:
        bench.sql(
            "TRUNCATE kpi_snapshots, kpi_aggregation_jobs, kpi_hourly_runs, kpi_hourly_totals"
        )
        bench.checkpoint()

    parameters = {"start": period.start, "end": period.end, "since": period.start}
    clear()
    bound = timed(lambda: bench.run_script("aggregate.sql", parameters))
    print(f"  aggregate bound: {bound:.1f} s", file=sys.stderr)
    rows = []
    for jobs in (1, 2):
        clear()
        seconds = timed(lambda jobs=jobs: bench.aggregate(period, jobs=jobs))
        print(f"  aggregate --jobs {jobs}: {seconds:.1f} s", file=sys.stderr)
        rows.append(
            Row(f"aggregate 168 h from scratch, --jobs {jobs}", f"{runs:,} runs", seconds, bound)
        )
    # every key exists with its value: each run's rows are recomputed and compared, none
    # rewritten (a repair's typical case: most values unchanged)
    full = timed(lambda: bench.aggregate(period, full_refresh=True))
    # the worst case: every run value differs from its recomputation, every row rewritten
    bench.sql("UPDATE kpi_snapshots SET value = -1 WHERE level = 'run'")
    bench.vacuum()
    bench.checkpoint()
    rewritten = timed(lambda: bench.aggregate(period, full_refresh=True))
    return [
        *rows,
        Row(
            "aggregate --full-refresh, values unchanged",
            f"{runs:,} runs",
            full,
            rows[0].kpictl_s,
            "bound: from scratch, --jobs 1",
        ),
        Row(
            "aggregate --full-refresh, every run value changed",
            f"{runs:,} runs",
            rewritten,
            rows[0].kpictl_s,
            "bound: from scratch, --jobs 1",
        ),
    ]


# The state the from-scratch run left: the cycles' jobs, snapshots and new runs removed (their
# periods start after it, and it wrote none of their keys; the hour they recomputed holds the
# same parts again). Parameters: %(since)s (when the from-scratch job ended), %(tags)s.
UNDO_CYCLES = """
DELETE FROM kpi_snapshots WHERE job_id IN
  (SELECT id FROM kpi_aggregation_jobs WHERE started_at > %(since)s);
DELETE FROM kpi_aggregation_jobs WHERE started_at > %(since)s;
DELETE FROM agent_runs WHERE execution_id IN (SELECT md5(t || g)::uuid
  FROM unnest(CAST(%(tags)s AS text[])) t, generate_series(1, 2000) g);
DELETE FROM mcp_tool_calls WHERE execution_id IN (SELECT md5(t || g)::uuid
  FROM unnest(CAST(%(tags)s AS text[])) t, generate_series(1, 2000) g);
DELETE FROM workflow_executions WHERE id IN (SELECT md5(t || g)::uuid
  FROM unnest(CAST(%(tags)s AS text[])) t, generate_series(1, 2000) g)
"""

# Runs in the order they completed, as the platform's table holds them (a run's row gets its
# completed_at in the UPDATE that completes it, and that row version goes to the table's end).
COMPLETION_ORDER = """
CLUSTER workflow_executions USING kpictl_workflow_executions_completed_cover;
CLUSTER verdict_outcomes USING kpictl_verdict_outcomes_decided_cover
"""


def _next_cycles(bench: Bench, period: Period) -> list[float]:
    """Three 5-minute cycles after the from-scratch run of `period`, each with 2,000 new runs."""
    cycles = []
    for cycle in range(1, 4):
        since = period.end + timedelta(minutes=5 * (cycle - 1))
        bench.run_sql(NEW_RUNS, {"tag": f"next{cycle}/", "count": 2_000, "since": since})
        shift = timedelta(minutes=5 * cycle)
        started = time.perf_counter()
        result = bench.aggregate(Period(period.start + shift, period.end + shift))
        cycles.append(time.perf_counter() - started)
        print(f"  next cycle {cycle}: {result.periods[0].timings_ms} ms", file=sys.stderr)
    return sorted(cycles)


def next_cycle_scenario(bench: Bench, scale: str) -> list[Row]:
    """The next cycles on the generated runs (scattered over the table at random: a worst case,
    every run of an hour on a page of its own), then the same cycles again on the same runs
    laid out in completion order."""
    runs = SIZES[scale]["next_cycle_runs"]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    period = Period(end - timedelta(hours=168), end)
    reset_sources(bench)
    load_runs(bench, seed=5, days=7, runs_per_day=runs // 7, now=end)
    scratch = timed(lambda: bench.aggregate(period, jobs=2))
    scratch_ended = datetime.now(UTC)
    scattered = _next_cycles(bench, period)
    tags = [f"next{cycle}/" for cycle in range(1, 4)]
    bench.run_sql(UNDO_CYCLES, {"since": scratch_ended, "tags": tags})
    bench.run_sql(COMPLETION_ORDER, {})
    bench.vacuum()
    bench.checkpoint()
    ordered = _next_cycles(bench, period)
    # the hourly cycle that checks its whole window again (run level and kept hours), as the
    # timer runs it once an hour, with --jobs 2
    hourly = Period(period.start + timedelta(minutes=20), end + timedelta(minutes=20))
    full_scan = timed(lambda: bench.aggregate(hourly, jobs=2, full_scan_every=timedelta(0)))
    return [
        Row("aggregate 168 h from scratch, --jobs 2", f"{runs:,} runs", scratch, None),
        *(
            Row(
                f"aggregate, next cycle (+2,000 runs), {layout}",
                f"2,000 new on {runs:,}",
                cycles[1],
                None,
                f"{100 * cycles[1] / scratch:.2f} % of from scratch (median of 3; "
                f"{cycles[0]:.2f}-{cycles[2]:.2f} s)",
            )
            for layout, cycles in (
                ("runs scattered at random", scattered),
                ("runs in completion order", ordered),
            )
        ),
        Row(
            "aggregate, the hourly full-scan cycle, --jobs 2",
            f"{runs:,} runs",
            full_scan,
            None,
            f"{100 * full_scan / scratch:.0f} % of from scratch",
        ),
    ]


def scenarios(bench: Bench, scale: str, retention_scale: str | None, parts: list[str]) -> list[Row]:
    """The `parts` asked for (scaling-retention, scaling-parallel, scaling-next-cycle);
    `retention_scale` runs the retention scenario at another scale (its large size is 36M rows,
    loaded three times)."""
    rows = []
    if "scaling-retention" in parts:
        rows += retention_scenario(bench, retention_scale or scale)
    if "scaling-parallel" in parts:
        rows += parallel_scenarios(bench, scale)
    if "scaling-next-cycle" in parts:
        rows += next_cycle_scenario(bench, scale)
    return rows
