"""The aggregation pipeline (docs/spec/pipeline.md): `aggregate` and `backfill`.

Order per period: run level (keyset chunks, each committed), product level, factory level
(rolled up from the product step's additive parts plus runs without an enabled product), then
the materialized views. Every statement is set-based: the number of statements depends on the
number of chunks (runs / chunk size) and buckets, never on the number of runs or products.

Each run is one job of the job runner (`jobs.runner.run_job`): one pipeline at a time
(`lock.PIPELINE`), one job row per run, and a stop request (`stop.StopRequest`) ends the job
`cancelled` after the current step. This module supplies only the work and `PipelineResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from kpictl import _testing, kpis
from kpictl.errors import LockLost, describe_error, server_gone
from kpictl.log_context import job_logged_as
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs.progress import Progress
from kpictl.services.jobs.rows import last_completed_aggregate_scan
from kpictl.services.jobs.runner import Job, JobSpec, JobWork, RowEnd, run_job
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import hourly_parts, kpi_sql
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
    last full scan is recent; a full scan of the period otherwise."""
    now = connection.execute(text("SELECT now()")).scalar_one()
    previous = last_completed_aggregate_scan(connection, "run_scan")
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
SELECT coalesce(last_analyze, last_autoanalyze) IS NULL
       OR n_mod_since_analyze > 0.2 * greatest(n_live_tup, 10000)
FROM pg_stat_user_tables WHERE relid = 'kpi_snapshots'::regclass
"""
)


def refresh_statistics_if_stale(connection: Connection) -> None:
    """ANALYZE kpi_snapshots when the planner's statistics are missing or well behind.

    Without them (a new installation, a bulk load, a TRUNCATE) PostgreSQL guesses, and the
    per-run existence probe may walk an index of every run snapshot instead of the key index.
    Autovacuum catches up eventually; a 5-minute cycle should not wait for it. (A role that does
    not own the table gets a warning from ANALYZE and carries on.)"""
    if connection.execute(STALE_STATISTICS).scalar():
        connection.execute(text("ANALYZE kpi_snapshots"))


def count_pending_runs(
    connection: Connection, period: Period, options: PipelineOptions, scan_from: datetime
) -> int:
    clock = kpi_sql.SourceClock.detect(connection)
    parameters = {**base_parameters(period, None, options), "scan_from": scan_from}
    return int(connection.execute(kpi_sql.pending_runs(clock), parameters).scalar_one())


# --- steps ------------------------------------------------------------------------------------


@contextmanager
def _timed(counts: PeriodCounts, step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    counts.timings_ms[step] = counts.timings_ms.get(step, 0) + round(
        (time.monotonic() - started) * 1000
    )


@contextmanager
def _counted_on_commit(counts: PeriodCounts, *fields: str) -> Iterator[None]:
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
    commit_chunks: bool,
    progress: Progress,
    stop: StopRequest,
    scan_from: datetime | None = None,
) -> None:
    clock = kpi_sql.SourceClock.detect(connection)
    upsert = not only_new or bool(connection.execute(kpi_sql.OTHER_RUN_WRITERS).scalar())
    first_chunk = kpi_sql.run_level_chunk(
        clock, only_new=only_new, after_cursor=False, upsert=upsert
    )
    next_chunk = kpi_sql.run_level_chunk(clock, only_new=only_new, after_cursor=True, upsert=upsert)
    parameters = base_parameters(period, job_id, options)
    if scan_from is not None:
        parameters["scan_from"] = scan_from
    statements, after_completed, after_id = first_chunk, None, None
    chunks = 0
    with _timed(counts, "run"):
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
            written = sum(
                connection.execute(write, parameters).rowcount for write in statements.writes
            )
            row = connection.execute(statements.summary).one()
            connection.execute(statements.drop)
            if commit_chunks:
                connection.commit()  # counted once committed: the counts say what was written
            counts.runs += row.runs
            counts.run_snapshots += written
            progress.advance(row.runs)
            if row.runs < options.chunk_size:
                break
            if chunks == 0:
                # A backlog: refresh the planner's view of kpi_snapshots (typically near-empty
                # statistics on a first run) so the next chunks probe the key index.
                connection.execute(text("ANALYZE kpi_snapshots"))
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
    with _timed(counts, "product"):
        _testing.pause(connection, "product")
        for statement in kpi_sql.collect_parts(clock):
            connection.execute(statement, parameters)
        parts = connection.execute(kpi_sql.parts_summary()).one()
        counts.products = parts.products
        counts.invalid_runs = (
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
    with _timed(counts, "factory"):
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


# --- the two jobs -----------------------------------------------------------------------------


@dataclass
class PipelineResult:
    job_id: str
    job_type: str
    status: str
    periods: list[PeriodCounts]
    invalid_runs: int = 0
    skipped_buckets: int = 0
    failed_buckets: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0
    run_scan: dict[str, Any] | None = None
    parts_scan: dict[str, Any] | None = None

    @property
    def snapshots_created(self) -> int:
        return sum(counts.snapshots for counts in self.periods)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "jobType": self.job_type,
            "status": self.status,
            "snapshotsCreated": self.snapshots_created,
            "invalidRuns": self.invalid_runs,
            "durationMs": self.duration_ms,
            "skippedBuckets": self.skipped_buckets,
            "failedBuckets": self.failed_buckets,
            "periods": [_period_dict(counts) for counts in self.periods],
        }


def _period_dict(counts: PeriodCounts) -> dict[str, Any]:
    document = {_camel(key): value for key, value in asdict(counts).items()}
    document["snapshots"] = counts.snapshots
    return document


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _PipelineWork(JobWork[PipelineResult]):
    """Aggregate or backfill as a job (`jobs.runner`): the body runs on one guarded connection
    watched by the stop request; the result it fills in is also the partial result."""

    def __init__(self, job_type: str, body: Callable[[Any, Connection, PipelineResult], None]):
        self.body = body
        self.result = PipelineResult("", job_type, "running", [])

    def run(self, job: Job) -> PipelineResult:
        self.result.job_id = str(job.id)
        with job.connect() as work:
            self.body(job.id, work, self.result)
        return self.result

    def partial(self) -> PipelineResult:
        return self.result

    def row(self, result: PipelineResult) -> RowEnd:
        failed = len(result.failed_buckets)
        return RowEnd(
            result.snapshots_created,
            _job_metadata(result),
            f"{failed} bucket(s) failed" if failed else None,
        )

    def ended(self, result: PipelineResult, job: Job) -> None:
        result.status, result.duration_ms = job.status, job.duration_ms


def _run_job(
    engine: Engine,
    job_type: str,
    periods: list[Period],
    metadata: dict[str, Any],
    options: PipelineOptions,
    stop: StopRequest,
    body: Callable[[Any, Connection, PipelineResult], None],
) -> PipelineResult:
    """One pipeline at a time (`lock.PIPELINE`); the job row ends completed / failed / cancelled,
    a failed job's error carries the result committed so far (`jobs.runner.run_job`)."""
    spec = JobSpec(
        locks.PIPELINE,
        job_type,
        metadata,
        kpi_names=kpis.names(),
        period_start=periods[0].start,
        period_end=periods[-1].end,
        wait_seconds=options.wait_seconds,
    )
    return run_job(engine, spec, _PipelineWork(job_type, body), stop=stop)


def _error_text(exc: BaseException, stop: StopRequest) -> str:
    if stop.requested:
        return f"cancelled by {stop.signal_name}"
    return describe_error(exc)


def _job_metadata(result: PipelineResult) -> dict[str, Any]:
    levels = {
        "run": sum(counts.run_snapshots for counts in result.periods),
        "product": sum(counts.product_snapshots for counts in result.periods),
        "factory": sum(counts.factory_snapshots for counts in result.periods),
    }
    timings: dict[str, int] = {}
    for counts in result.periods:
        for step, ms in counts.timings_ms.items():
            timings[step] = timings.get(step, 0) + ms
    document: dict[str, Any] = {
        "snapshots_per_level": levels,
        "runs_processed": sum(counts.runs for counts in result.periods),
        "products": max((counts.products for counts in result.periods), default=0),
        "timings_ms": timings,
        "invalid_runs": result.invalid_runs,
    }
    if result.run_scan is not None:
        document["run_scan"] = result.run_scan
    if result.parts_scan is not None:
        document["parts_scan"] = result.parts_scan
    if result.job_type == "backfill":
        document["skipped_buckets"] = result.skipped_buckets
        document["failed_buckets"] = result.failed_buckets
        document["buckets"] = [
            {
                "period_start": counts.period_start,
                "period_end": counts.period_end,
                "runs": counts.runs,
                "products": counts.products,
                "snapshots": counts.snapshots,
            }
            for counts in result.periods
        ]
    return document


def aggregate(
    engine: Engine,
    period: Period,
    *,
    metadata: dict[str, Any],
    options: PipelineOptions,
    stop: StopRequest,
    progress: Progress | None = None,
) -> PipelineResult:
    """One aggregation cycle over `period`: each level in its own transaction."""
    progress = progress or Progress()

    def body(job_id: Any, work: Connection, result: PipelineResult) -> None:
        log.info("Starting aggregation pipeline")
        log.info("Period: %s to %s", period.start.isoformat(), period.end.isoformat())
        counts = PeriodCounts(period.start, period.end)
        result.periods.append(counts)
        refresh_statistics_if_stale(work)
        scan = run_scan(work, period, options)
        result.run_scan = scan.as_metadata(period.end)
        pending = count_pending_runs(work, period, options, scan.scan_from)
        work.commit()
        log.info("Processing %d run-level aggregations", pending)
        progress.start("run level", pending)
        run_level(
            work,
            period,
            job_id,
            options,
            counts,
            only_new=True,
            commit_chunks=True,
            progress=progress,
            stop=stop,
            scan_from=scan.scan_from,
        )
        stop.check()
        with _counted_on_commit(counts, "product_snapshots"), work.begin():
            with _timed(counts, "parts"):
                parts = hourly_parts.keep_current(
                    work,
                    period,
                    source_timezone=options.source_timezone,
                    lookback=options.lookback,
                    full_scan_every=options.full_scan_every,
                )
            window = parts.window(period)
            product_level(work, period, job_id, options, counts, announce=True, parts_window=window)
        result.parts_scan = parts.as_metadata(period.end)
        result.invalid_runs = counts.invalid_runs
        stop.check()
        log.info("Processing factory-level aggregation")
        with _counted_on_commit(counts, "factory_snapshots"), work.begin():
            factory_level(work, period, job_id, options, counts, parts_window=window)
        stop.check()
        with _timed(counts, "views"), work.begin():
            refresh_views(work, options)
        log.info("Materialized views refreshed")

    result = _run_job(engine, "aggregate", [period], metadata, options, stop, body)
    with job_logged_as(result.job_id):
        log.info(
            "Aggregation completed: %d snapshots in %dms (job %s)",
            result.snapshots_created,
            result.duration_ms,
            result.job_id,
        )
    return result


def backfill(
    engine: Engine,
    periods: list[Period],
    *,
    force: bool,
    metadata: dict[str, Any],
    options: PipelineOptions,
    stop: StopRequest,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> PipelineResult:
    """Compute each bucket in its own transaction; skip computed ones unless `force`; a failed
    bucket is recorded and the rest continue. A bucket not over by the look-back at `now` is
    never skipped, nor one last computed before that (it saw only part of its runs)."""
    progress = progress or Progress()

    def body(job_id: Any, work: Connection, result: PipelineResult) -> None:
        log.info("Starting backfill of %d bucket(s)", len(periods))
        progress.start("buckets", len(periods))
        refresh_statistics_if_stale(work)
        work.commit()
        is_computed = kpi_sql.bucket_computed()
        for period in periods:
            stop.check()
            counts = PeriodCounts(period.start, period.end)
            parameters = base_parameters(period, job_id, options)
            try:
                with work.begin():
                    finished = now is None or period.end + options.lookback <= now
                    settled = {**parameters, "settled": options.lookback}
                    if not force and finished and work.execute(is_computed, settled).scalar_one():
                        result.skipped_buckets += 1
                        progress.advance(1)
                        continue
                    run_level(
                        work,
                        period,
                        job_id,
                        options,
                        counts,
                        only_new=not force,
                        commit_chunks=False,
                        progress=Progress(),
                        stop=stop,
                    )
                    product_level(work, period, job_id, options, counts)
                    factory_level(work, period, job_id, options, counts)
            except Exception as exc:
                if stop.requested or isinstance(exc, LockLost) or server_gone(exc):
                    raise  # the whole job ends: no bucket can commit now
                error = _error_text(exc, stop)
                log.error("Bucket %s failed: %s", period.label(), error)
                result.failed_buckets.append(
                    {
                        "period_start": period.start.isoformat(),
                        "period_end": period.end.isoformat(),
                        "error": error,
                    }
                )
                progress.advance(1)
                continue
            result.periods.append(counts)
            result.invalid_runs += counts.invalid_runs
            progress.advance(1)
        stop.check()
        with work.begin():
            refresh_views(work, options)
        log.info("Materialized views refreshed")

    result = _run_job(engine, "backfill", periods, metadata, options, stop, body)
    log.info(
        "Backfill %s: %d snapshots in %d bucket(s), %d skipped, %d failed, %dms",
        result.status,
        result.snapshots_created,
        len(result.periods),
        result.skipped_buckets,
        len(result.failed_buckets),
        result.duration_ms,
    )
    return result
