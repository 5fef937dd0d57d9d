"""The steps of one aggregation period, each a set-based statement or a few (docs/spec/pipeline.md
§3-§4): the run level in keyset chunks (each committed), the product level (hourly parts kept
current, then the period's additive parts), the factory level rolled up from them, and the
materialized views; the plan `--dry-run` shows, and the counts and timings of each step.

The job around them (lock, job row, stop request, one period or many buckets) is
`services/pipeline/run.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

from kpictl import _testing, kpis
from kpictl.db import partitions
from kpictl.services.jobs.progress import Progress
from kpictl.services.jobs.rows import last_completed_aggregate_scan
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import kpi_sql, run_level_sql
from kpictl.services.pipeline.periods import Period

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 250_000


@dataclass(frozen=True)
class PipelineOptions:
    source_timezone: str = "UTC"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    wait_seconds: float | None = None  # None: exit 75 at once when the lock is held
    # Incremental run level: a cycle checks the runs completed since the previous cycle's end,
    # less `lookback` (for runs committed a little after they completed); every
    # `full_scan_every` a cycle checks the whole period again (runs recorded later still).
    lookback: timedelta = timedelta(minutes=15)
    full_scan_every: timedelta = timedelta(hours=1)
    # --full-refresh: recompute every key of the window, whatever the previous cycles did (no
    # incremental scan, every run's snapshots rewritten, every kept hour rebuilt).
    full_refresh: bool = False
    # --jobs: backfill buckets computed on this many connections at once (under the one lock)
    jobs: int = 1


@dataclass
class PeriodCounts:
    period_start: datetime
    period_end: datetime
    runs: int = 0
    run_snapshots: int = 0
    product_snapshots: int = 0
    factory_snapshots: int = 0
    products: int = 0
    invalid_runs: int = 0
    timings_ms: dict[str, int] = field(default_factory=dict)

    @property
    def snapshots(self) -> int:
        return self.run_snapshots + self.product_snapshots + self.factory_snapshots


@dataclass
class Plan:
    period: Period
    pending_runs: int
    terminal_runs: int
    invalid_runs: int
    products: int


def base_parameters(period: Period, job_id: Any, options: PipelineOptions) -> dict[str, Any]:
    parameters: dict[str, Any] = {kpi.name: kpi.name for kpi in kpis.KPIS}
    parameters.update(
        version=kpis.KPI_VERSION,
        period_start=period.start,
        period_end=period.end,
        period_seconds=int((period.end - period.start).total_seconds()),
        source_tz=options.source_timezone,
        job_id=str(job_id) if job_id else None,
        scan_from=period.start,
        # no hourly parts (backfill, dry-run): the whole period is read from the runs
        parts_from=period.end,
        parts_to=period.end,
    )
    return parameters


def plan(connection: Connection, period: Period, options: PipelineOptions) -> Plan:
    """What `aggregate` would do now (--dry-run): the runs its run level would snapshot (with
    the same incremental scan), the period's terminal and invalid runs and its products."""
    clock = kpi_sql.SourceClock.detect(connection)
    scan = run_scan(connection, period, options)
    pending = count_pending_runs(connection, period, options, scan.scan_from)
    row = connection.execute(kpi_sql.plan(clock), base_parameters(period, None, options)).one()
    return Plan(period, pending, row.terminal_runs, row.invalid_runs, row.products)


# --- the incremental run level ----------------------------------------------------------------


@dataclass(frozen=True)
class RunScan:
    """Which runs a cycle's run level checks: from `scan_from` to the period end.

    `covered_from`: every run completed since then has been checked by this chain of cycles;
    `full_scan_at`: when the chain last checked its whole period."""

    scan_from: datetime
    covered_from: datetime
    full: bool
    full_scan_at: datetime

    def as_metadata(self, through: datetime) -> dict[str, Any]:
        return {
            "from": self.scan_from.isoformat(),
            "through": through.isoformat(),
            "covered_from": self.covered_from.isoformat(),
            "full": self.full,
            "full_scan_at": self.full_scan_at.isoformat(),
        }


def run_scan(connection: Connection, period: Period, options: PipelineOptions) -> RunScan:
    """Incremental when the previous completed aggregate covered this period's start and its
    last full scan is recent; a full scan of the period otherwise (always with --full-refresh)."""
    now = connection.execute(text("SELECT now()")).scalar_one()
    previous = (
        None if options.full_refresh else last_completed_aggregate_scan(connection, "run_scan")
    )
    if previous:
        covered_from = datetime.fromisoformat(previous["covered_from"])
        through = datetime.fromisoformat(previous["through"])
        full_scan_at = datetime.fromisoformat(previous["full_scan_at"])
        if covered_from <= period.start and now - full_scan_at < options.full_scan_every:
            scan_from = min(max(period.start, through - options.lookback), period.end)
            return RunScan(scan_from, covered_from, False, full_scan_at)
    return RunScan(period.start, period.start, True, now)


STALE_STATISTICS = text(
    """
SELECT s.relid::regclass::text
FROM pg_stat_user_tables s
WHERE s.relid = ANY(CAST(:tables AS regclass[]))
  AND (coalesce(s.last_analyze, s.last_autoanalyze) IS NULL
       OR s.n_mod_since_analyze > 0.2 * greatest(s.n_live_tup, 10000))
"""
)


def refresh_statistics_if_stale(connection: Connection, period: Period | None = None) -> None:
    """ANALYZE the run snapshots a cycle probes when the planner's statistics are missing or
    well behind: `kpi_snapshots` itself, or, partitioned (revision 0008), the run partitions of
    `period` (ANALYZE of the parent would sample every partition, every cycle).

    Without them (a new installation, a bulk load, a TRUNCATE, a new day's partition) PostgreSQL
    guesses, and the per-run existence probe may walk an index of every run snapshot instead of
    the key index. Autovacuum catches up eventually; a 5-minute cycle should not wait for it. (A
    role that does not own the table gets a warning from ANALYZE and carries on.)"""
    tables = ["kpi_snapshots"]
    if partitions.is_partitioned(connection):
        now = connection.execute(text("SELECT now()")).scalar_one()
        start, end = (period.start, period.end) if period else (now, now)
        tables = [
            partition.name
            for partition in partitions.covering("run", start, end)
            if connection.execute(text("SELECT to_regclass(:n)"), {"n": partition.name}).scalar()
        ]
    if not tables:
        return
    for stale in connection.execute(STALE_STATISTICS, {"tables": tables}).scalars():
        connection.execute(text(ANALYZE.format(table=stale)))


# SKIP_LOCKED: a table another session is analyzing (a parallel worker writing the same day,
# autovacuum) is left to it; waiting would hit lock_timeout and fail the cycle for statistics.
ANALYZE = "ANALYZE (SKIP_LOCKED) {table}"


def analyze_run_snapshots(connection: Connection, period: Period) -> None:
    """ANALYZE what the run level writes to: the run partitions of `period` on the partitioned
    table (not every partition: ANALYZE of the parent samples them all), else the table."""
    if not partitions.is_partitioned(connection):
        connection.execute(text(ANALYZE.format(table="kpi_snapshots")))
        return
    for partition in partitions.covering("run", period.start, period.end):
        if connection.execute(text("SELECT to_regclass(:n)"), {"n": partition.name}).scalar():
            connection.execute(text(ANALYZE.format(table=partition.name)))


def make_partitions(connection: Connection, start: datetime, end: datetime) -> None:
    """The partitions that the rows of [start, end] go to, and those ahead of now, made before
    the cycle writes (`kpictl/db/partitions.py`) and committed at once. A role that may not
    make them (not the table's owner) is warned: its rows go to the default partitions."""
    now = connection.execute(text("SELECT now()")).scalar_one()
    try:
        with connection.begin_nested():
            partitions.ensure_around(connection, start, end, now)
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        log.warning(
            "partitions of kpi_snapshots not made (%s); rows go to the default partitions until "
            "a role that owns the table runs aggregate, backfill or retention",
            str(exc.orig).splitlines()[0],
        )
    connection.commit()


def count_pending_runs(
    connection: Connection, period: Period, options: PipelineOptions, scan_from: datetime
) -> int:
    clock = kpi_sql.SourceClock.detect(connection)
    parameters = {**base_parameters(period, None, options), "scan_from": scan_from}
    probe = not options.full_refresh and any_run_done(connection, parameters)
    statement = run_level_sql.pending_runs(clock, probe=probe)
    return int(connection.execute(statement, parameters).scalar_one())


def any_run_done(connection: Connection, parameters: dict[str, Any]) -> bool:
    """Has a kpictl job snapshotted any run of the scan range ([scan_from, period_end) of
    `parameters`)? If not, the run level need not probe each run (`run_level_sql.RUN_DONE`)."""
    clock = kpi_sql.SourceClock.detect(connection)
    statement = run_level_sql.kpictl_run_snapshots_in_scan(clock)
    return bool(connection.execute(statement, parameters).scalar_one())


def other_run_writers(connection: Connection) -> bool:
    """Does anything besides kpictl write run snapshots (the AFU-9 platform's trigger, or rows
    it left)? Then the run level writes with upserts. Asked once a job (adoption, which adds
    the trigger, waits for the pipeline lock)."""
    return bool(connection.execute(run_level_sql.OTHER_RUN_WRITERS).scalar())


# --- steps ------------------------------------------------------------------------------------


@contextmanager
def timed(counts: PeriodCounts, step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    counts.timings_ms[step] = counts.timings_ms.get(step, 0) + round(
        (time.monotonic() - started) * 1000
    )


@contextmanager
def counted_on_commit(counts: PeriodCounts, *fields: str) -> Iterator[None]:
    """Around a transaction: when it does not commit, the counts it set go back to what they
    were, so a failed job's counts (job row, summary) say what was committed."""
    before = {name: getattr(counts, name) for name in fields}
    try:
        yield
    except BaseException:
        for name, value in before.items():
            setattr(counts, name, value)
        raise


def run_level(
    connection: Connection,
    period: Period,
    job_id: Any,
    options: PipelineOptions,
    counts: PeriodCounts,
    *,
    only_new: bool,
    other_writers: bool,
    commit_chunks: bool,
    progress: Progress,
    stop: StopRequest,
    scan_from: datetime | None = None,
    on_first_chunk: Callable[[int, bool], None] | None = None,
) -> None:
    """Snapshot the runs completed in [scan_from, period end) in keyset chunks: only those not
    done yet (`only_new`), or every one (--full-refresh). `other_writers`: see
    `other_run_writers`. `on_first_chunk(runs, more)`: called once the first chunk is picked,
    before it is written, with its runs and whether more chunks may follow (it is full)."""
    clock = kpi_sql.SourceClock.detect(connection)
    parameters = base_parameters(period, job_id, options)
    if scan_from is not None:
        parameters["scan_from"] = scan_from
    shape = {
        "only_new": only_new,
        "upsert": not only_new or other_writers,
        "probe": only_new and any_run_done(connection, parameters),
    }
    first_chunk = run_level_sql.run_level_chunk(clock, after_cursor=False, **shape)
    next_chunk = run_level_sql.run_level_chunk(clock, after_cursor=True, **shape)
    statements, after_completed, after_id = first_chunk, None, None
    chunks = 0
    with timed(counts, "run"):
        _testing.pause(connection, "run")
        while True:
            chunk_parameters = {
                **parameters,
                "chunk_size": options.chunk_size,
                "after_completed": after_completed,
                "after_id": after_id,
            }
            connection.execute(statements.pick, chunk_parameters)
            connection.execute(statements.analyze)
            row = connection.execute(statements.summary).one()
            if chunks == 0 and on_first_chunk is not None:
                on_first_chunk(row.runs, row.runs >= options.chunk_size)
            if row.runs:
                chunk_range = {"earliest": row.earliest, "latest": row.latest}
                for clear in statements.clear:
                    connection.execute(clear, {**parameters, **chunk_range})
            written = sum(
                connection.execute(write, parameters).rowcount for write in statements.writes
            )
            connection.execute(statements.drop)
            if commit_chunks:
                connection.commit()  # counted once committed: the counts say what was written
            counts.runs += row.runs
            counts.run_snapshots += written
            progress.advance(row.runs)
            if row.runs < options.chunk_size:
                break
            if chunks == 0 and shape["probe"]:
                # A backlog: refresh the planner's view of the run snapshots (typically near-empty
                # statistics on a first run) so the next chunks probe the key index.
                # (the partitions of the runs this call writes: [scan_from, period end))
                analyze_run_snapshots(connection, Period(scan_from or period.start, period.end))
            chunks += 1
            statements, after_completed, after_id = next_chunk, row.last_completed, str(row.last_id)
            if commit_chunks:
                stop.check()


def product_level(
    connection: Connection,
    period: Period,
    job_id: Any,
    options: PipelineOptions,
    counts: PeriodCounts,
    *,
    announce: bool = False,
    parts_window: tuple[datetime, datetime] | None = None,
) -> None:
    """Collect the period's additive parts per repository (and its invalid runs), then write
    the product rows; the factory step rolls the same parts up. `parts_window`: the full hours
    of the period to take from the hourly parts (`hourly_parts.PartsScan.window`)."""
    clock = kpi_sql.SourceClock.detect(connection)
    parameters = _with_parts(base_parameters(period, job_id, options), parts_window)
    with timed(counts, "product"):
        _testing.pause(connection, "product")
        for statement in kpi_sql.collect_parts(clock):
            connection.execute(statement, parameters)
        parts = connection.execute(kpi_sql.parts_summary()).one()
        counts.products = int(parts.products)
        counts.invalid_runs = int(  # sum() of counts is numeric in SQL: a count is an int
            parts.invalid
            + connection.execute(kpi_sql.invalid_without_completion(clock), parameters).scalar_one()
        )
        if announce:
            log.info("Processing %d product-level aggregations", counts.products)
        counts.product_snapshots = connection.execute(
            kpi_sql.product_level(), parameters
        ).scalar_one()


def factory_level(
    connection: Connection,
    period: Period,
    job_id: Any,
    options: PipelineOptions,
    counts: PeriodCounts,
    *,
    parts_window: tuple[datetime, datetime] | None = None,
) -> None:
    clock = kpi_sql.SourceClock.detect(connection)
    parameters = _with_parts(base_parameters(period, job_id, options), parts_window)
    with timed(counts, "factory"):
        _testing.pause(connection, "factory")
        counts.factory_snapshots = connection.execute(
            kpi_sql.factory_level(clock), parameters
        ).scalar_one()


def _with_parts(
    parameters: dict[str, Any], parts_window: tuple[datetime, datetime] | None
) -> dict[str, Any]:
    if parts_window is not None:
        parameters["parts_from"], parameters["parts_to"] = parts_window
    return parameters


def refresh_views(connection: Connection, options: PipelineOptions) -> None:
    _testing.pause(connection, "views")
    # The views compare zone-less source timestamps with now(): in this transaction they are
    # read in the source zone (KPICTL_SOURCE_TIMEZONE), like the levels read them.
    connection.execute(
        text("SELECT set_config('TimeZone', :zone, true)"), {"zone": options.source_timezone}
    )
    for view in kpi_sql.MATERIALIZED_VIEWS:
        connection.execute(kpi_sql.refresh_view(view))
