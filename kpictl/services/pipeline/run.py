"""The aggregation pipeline (docs/spec/pipeline.md): `aggregate` and `backfill`.

Order per period: run level (keyset chunks, each committed), product level, factory level
(rolled up from the product step's additive parts plus runs without an enabled product), then
the materialized views. Every statement is set-based: the number of statements depends on the
number of chunks (runs / chunk size) and buckets, never on the number of runs or products.

Each run is one job of the job runner (`jobs.runner.run_job`): one pipeline at a time
(`lock.PIPELINE`), one job row per run, and a stop request (`stop.StopRequest`) ends the job
`cancelled` after the current step. This module supplies only the work and `PipelineResult`; the steps themselves are in
`services/pipeline/steps.py`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from kpictl import kpis
from kpictl.errors import LockLost, describe_error, server_gone
from kpictl.log_context import job_logged_as
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs.progress import Progress
from kpictl.services.jobs.runner import Job, JobSpec, JobWork, RowEnd, run_job
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import hourly_parts, kpi_sql, parallel
from kpictl.services.pipeline.periods import Period
from kpictl.services.pipeline.steps import (
    PeriodCounts,
    PipelineOptions,
    base_parameters,
    count_pending_runs,
    counted_on_commit,
    factory_level,
    make_partitions,
    other_run_writers,
    product_level,
    refresh_statistics_if_stale,
    refresh_views,
    run_level,
    run_scan,
    timed,
)

log = logging.getLogger(__name__)


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


class _PipelineWork(JobWork[PipelineResult]):
    """Aggregate or backfill as a job (`jobs.runner`): the body runs on one guarded connection
    watched by the stop request; the result it fills in is also the partial result."""

    def __init__(self, job_type: str, body: Callable[[Job, Connection, PipelineResult], None]):
        self.body = body
        self.result = PipelineResult("", job_type, "running", [])

    def run(self, job: Job) -> PipelineResult:
        self.result.job_id = str(job.id)
        with job.connect() as work:
            self.body(job, work, self.result)
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
    body: Callable[[Job, Connection, PipelineResult], None],
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

    def body(job: Job, work: Connection, result: PipelineResult) -> None:
        job_id = job.id
        log.info("Starting aggregation pipeline")
        log.info("Period: %s to %s", period.start.isoformat(), period.end.isoformat())
        counts = PeriodCounts(period.start, period.end)
        result.periods.append(counts)
        make_partitions(work, period.start, period.end)
        scan = run_scan(work, period, options)
        result.run_scan = scan.as_metadata(period.end)
        # the partitions the run level probes: those of its scan range
        refresh_statistics_if_stale(work, Period(scan.scan_from, period.end))
        other_writers = other_run_writers(work)

        def announce(pending: int) -> None:
            log.info("Processing %d run-level aggregations", pending)
            progress.start("run level", pending)

        def announce_first_chunk(runs: int, more: bool) -> None:
            # a cycle's runs fit in its first chunk: their number is known without counting
            # them again (a second pass over the look-back's runs and their snapshots)
            announce(count_pending_runs(work, period, options, scan.scan_from) if more else runs)

        if options.jobs > 1 and scan.full:
            announce(count_pending_runs(work, period, options, scan.scan_from))
            work.commit()
            _run_level_in_slices(
                job, period, scan.scan_from, options, counts, progress, stop, other_writers
            )
        else:
            work.commit()
            run_level(
                work,
                period,
                job_id,
                options,
                counts,
                only_new=not options.full_refresh,
                other_writers=other_writers,
                commit_chunks=True,
                progress=progress,
                stop=stop,
                scan_from=scan.scan_from,
                on_first_chunk=announce_first_chunk,
            )
        stop.check()
        with counted_on_commit(counts, "product_snapshots"), work.begin():
            with timed(counts, "parts"):
                parts = hourly_parts.keep_current(
                    work,
                    period,
                    source_timezone=options.source_timezone,
                    lookback=options.lookback,
                    full_scan_every=options.full_scan_every,
                    full_refresh=options.full_refresh,
                )
            window = parts.window(period)
            product_level(work, period, job_id, options, counts, announce=True, parts_window=window)
        result.parts_scan = parts.as_metadata(period.end)
        result.invalid_runs = counts.invalid_runs
        stop.check()
        log.info("Processing factory-level aggregation")
        with counted_on_commit(counts, "factory_snapshots"), work.begin():
            factory_level(work, period, job_id, options, counts, parts_window=window)
        stop.check()
        with timed(counts, "views"), work.begin():
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


def _run_level_in_slices(
    job: Job,
    period: Period,
    scan_from: datetime,
    options: PipelineOptions,
    counts: PeriodCounts,
    progress: Progress,
    stop: StopRequest,
    other_writers: bool,
) -> None:
    """--jobs N on a cycle that scans its whole period (from scratch, hourly, --full-refresh):
    the runs completed in [scan_from, period end) cut into N consecutive time slices, each
    snapshotted in committed chunks on a connection of its own. A run's snapshots belong to
    that run alone, so the slices never write the same key."""
    step = (period.end - scan_from) / options.jobs
    slices = [scan_from + step * index for index in range(options.jobs)] + [period.end]
    merging = threading.Lock()

    def snapshot(connection: Connection, bounds: tuple[datetime, datetime]) -> None:
        own = PeriodCounts(period.start, period.end)
        run_level(
            connection,
            Period(period.start, bounds[1]),  # runs completed before the slice's end ...
            job.id,
            options,
            own,
            only_new=not options.full_refresh,
            other_writers=other_writers,
            commit_chunks=True,
            progress=progress,
            stop=stop,
            scan_from=bounds[0],  # ... and from its start
        )
        with merging:
            counts.runs += own.runs
            counts.run_snapshots += own.run_snapshots
            counts.timings_ms["run"] = max(counts.timings_ms.get("run", 0), own.timings_ms["run"])

    parallel.each(job, list(itertools.pairwise(slices)), snapshot, workers=options.jobs)


class _Buckets:
    """One backfill bucket in its own transaction, on whichever connection computes it (one, or
    one per worker with --jobs); the result is filled in under a lock."""

    def __init__(
        self,
        job_id: Any,
        options: PipelineOptions,
        force: bool,
        now: datetime | None,
        stop: StopRequest,
        progress: Progress,
        result: PipelineResult,
        other_writers: bool,
    ):
        self.job_id, self.options, self.force, self.now = job_id, options, force, now
        self.other_writers = other_writers
        self.stop, self.progress, self.result = stop, progress, result
        self.lock = threading.Lock()
        self.is_computed = kpi_sql.bucket_computed()

    def compute(self, work: Connection, period: Period) -> None:
        self.stop.check()
        counts = PeriodCounts(period.start, period.end)
        try:
            with work.begin():
                if self._already_computed(work, period):
                    with self.lock:
                        self.result.skipped_buckets += 1
                    self.progress.advance(1)
                    return
                # the bucket's run partitions, written by an earlier backfill and not analyzed
                # since: a --full-refresh clears and upserts them by key
                refresh_statistics_if_stale(work, period)
                run_level(
                    work,
                    period,
                    self.job_id,
                    self.options,
                    counts,
                    only_new=not self.force,
                    other_writers=self.other_writers,
                    commit_chunks=False,
                    progress=Progress(),
                    stop=self.stop,
                )
                product_level(work, period, self.job_id, self.options, counts)
                factory_level(work, period, self.job_id, self.options, counts)
        except Exception as exc:
            if self.stop.requested or isinstance(exc, LockLost) or server_gone(exc):
                raise  # the whole job ends: no bucket can commit now
            self._failed(period, exc)
            return
        with self.lock:
            self.result.periods.append(counts)
            self.result.invalid_runs += counts.invalid_runs
        self.progress.advance(1)

    def _already_computed(self, work: Connection, period: Period) -> bool:
        """Skipped unless forced: computed after its look-back had passed (a bucket not over by
        the look-back at `now` is never skipped)."""
        finished = self.now is None or period.end + self.options.lookback <= self.now
        if self.force or not finished:
            return False
        parameters = base_parameters(period, self.job_id, self.options)
        settled = {**parameters, "settled": self.options.lookback}
        return bool(work.execute(self.is_computed, settled).scalar_one())

    def _failed(self, period: Period, exc: Exception) -> None:
        error = _error_text(exc, self.stop)
        log.error("Bucket %s failed: %s", period.label(), error)
        failure = {
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
            "error": error,
        }
        with self.lock:
            self.result.failed_buckets.append(failure)
        self.progress.advance(1)


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
    """Compute each bucket in its own transaction; skip computed ones unless `force` (or
    --full-refresh, which rewrites every key of every bucket); a failed
    bucket is recorded and the rest continue. A bucket not over by the look-back at `now` is
    never skipped, nor one last computed before that (it saw only part of its runs)."""
    progress = progress or Progress()
    force = force or options.full_refresh

    def body(job: Job, work: Connection, result: PipelineResult) -> None:
        log.info("Starting backfill of %d bucket(s)", len(periods))
        progress.start("buckets", len(periods))
        if periods:
            make_partitions(work, periods[0].start, periods[-1].end)
        refresh_statistics_if_stale(work)
        other_writers = other_run_writers(work)
        work.commit()
        buckets = _Buckets(job.id, options, force, now, stop, progress, result, other_writers)
        if options.jobs > 1 and len(periods) > 1:
            parallel.each(job, periods, buckets.compute, workers=options.jobs)
        else:
            for period in periods:
                buckets.compute(work, period)
        result.periods.sort(key=lambda counts: counts.period_start)
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
