"""The bodies of `aggregate` and `backfill`: build the inputs, call the service, render.

Kept apart from `cli/pipeline.py` so that `--help` never imports SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from kpictl.cli import output, running
from kpictl.cli.database import open_database
from kpictl.cli.options import Format, time_zone
from kpictl.cli.render import pipeline as render
from kpictl.services.pipeline import periods, steps
from kpictl.services.pipeline import run as pipeline
from kpictl.settings import Settings


@dataclass(frozen=True)
class BackfillRange:
    """What a backfill was asked for: [since, until) in buckets aligned in `zone` (`until`
    None: the end of the current bucket)."""

    since: datetime
    until: datetime | None
    bucket: str
    zone: ZoneInfo


def backfill_range(since: str, until: str | None, bucket: str, timezone: str) -> BackfillRange:
    zone = time_zone(timezone, "--timezone")
    since_at = periods.parse_instant(since, zone, "--since")
    until_at = periods.parse_instant(until, zone, "--until") if until else None
    return BackfillRange(since_at, until_at, bucket, zone)


@dataclass(frozen=True)
class RunFlags:
    """What aggregate and backfill share: --wait, --full-refresh, --format."""

    wait: float | None
    full_refresh: bool
    format: Format
    jobs: int | None = 1  # None: auto (the server's max_parallel_workers, the CPU count)


def jobs_value(value: str) -> int | None:
    """--jobs: a whole number 1-16, or `auto` (None, resolved on the database)."""
    from kpictl.cli.options import whole_number
    from kpictl.services.pipeline.parallel import MAX_WORKERS

    if value.strip().lower() == "auto":
        return None
    return whole_number(value, "--jobs", within=(1, MAX_WORKERS))


def run_aggregate(
    settings: Settings, period_hours: int, align_seconds: int, *, dry_run: bool, run: RunFlags
) -> int:
    engine = open_database(settings).engine
    options = _options(settings, run, engine)
    period = periods.aligned_period(_database_now(engine), period_hours, align_seconds)
    if dry_run:
        return _show_plan(engine, period, options, run.format)
    with running.long_job(settings, _show_partial(run.format)) as (stop, progress):
        result = pipeline.aggregate(
            engine,
            period,
            metadata={**_metadata(settings, run), "jobs": options.jobs},
            options=options,
            stop=stop,
            progress=progress,
        )
    return _show_result(result, run.format)


def run_backfill(settings: Settings, wanted: BackfillRange, *, force: bool, run: RunFlags) -> int:
    engine = open_database(settings).engine
    options = _options(settings, run, engine)
    now = _database_now(engine)
    buckets = _buckets(wanted, now)
    metadata = _metadata(settings, run)
    metadata.update(bucket=wanted.bucket, timezone=wanted.zone.key, jobs=options.jobs)
    with running.long_job(settings, _show_partial(run.format)) as (stop, progress):
        result = pipeline.backfill(
            engine,
            buckets,
            force=force,
            metadata=metadata,
            options=options,
            stop=stop,
            progress=progress,
            now=now,
        )
    return _show_result(result, run.format)


def _options(settings: Settings, run: RunFlags, engine: Engine) -> steps.PipelineOptions:
    jobs = run.jobs
    if jobs is None:
        from kpictl.services.pipeline.parallel import auto_workers

        with engine.connect() as connection:
            jobs = auto_workers(connection)
    return steps.PipelineOptions(
        source_timezone=settings.source_timezone,
        wait_seconds=run.wait,
        full_refresh=run.full_refresh,
        jobs=jobs,
    )


def _metadata(settings: Settings, run: RunFlags) -> dict[str, Any]:
    """The job row's metadata: who ran it, and `full_refresh: true` when it was one."""
    metadata = running.job_metadata(settings)
    if run.full_refresh:
        metadata["full_refresh"] = True
    return metadata


def _database_now(engine: Engine) -> datetime:
    """The database's clock: the one that stamps the runs."""
    with engine.connect() as connection:
        return connection.execute(select(func.now())).scalar_one()


def _buckets(wanted: BackfillRange, now: datetime) -> list[periods.Period]:
    until = wanted.until
    if until is None:
        until = periods.current_bucket_end(now, wanted.bucket, wanted.zone)
    return periods.buckets(wanted.since, until, wanted.bucket, wanted.zone, now)


def _show_plan(engine: Engine, period: periods.Period, options: Any, format: Format) -> int:
    with engine.connect() as connection:
        plan = steps.plan(connection, period, options)
    if format == Format.json:
        output.emit_json(render.plan_document(plan))
    else:
        output.echo_lines(render.plan_lines(plan))
    return 0


def _show_result(result: pipeline.PipelineResult, format: Format) -> int:
    if format == Format.json:
        output.emit_json(render.result_document(result))
    else:
        output.echo_lines(render.result_lines(result))
    return render.result_exit_code(result)


def _show_partial(format: Format) -> Callable[[Any], None]:
    """A job that failed, lost its lock or was stopped still prints what it committed."""

    def show(partial: Any) -> None:
        # --format json: the failure's document only (one JSON document on stdout)
        if isinstance(partial, pipeline.PipelineResult) and format != Format.json:
            _show_result(partial, format)

    return show
