"""The bodies of `aggregate` and `backfill`: build the inputs, call the service, render.

Kept apart from `cli/pipeline.py` so that `--help` never imports SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kpictl.cli import output
from kpictl.cli.database import open_database
from kpictl.cli.options import time_zone, wait_seconds
from kpictl.cli.progress import progress_bar
from kpictl.cli.signals import graceful_stop
from kpictl.errors import KpictlError
from kpictl.redact import secrets_of_url
from kpictl.services.jobs.rows import job_metadata
from kpictl.services.pipeline import periods
from kpictl.services.pipeline import run as pipeline
from kpictl.settings import Settings


def _options(settings: Settings, wait: str | None) -> pipeline.PipelineOptions:
    return pipeline.PipelineOptions(
        source_timezone=settings.source_timezone,
        wait_seconds=wait_seconds(wait),
    )


def _metadata(settings: Settings) -> dict[str, Any]:
    return job_metadata(settings.argv, secrets_of_url(settings.target.url))


def run_aggregate(
    settings: Settings,
    period_hours: int,
    align_seconds: int,
    dry_run: bool,
    wait: str | None,
    fmt: str,
) -> int:
    options = _options(settings, wait)
    database = open_database(settings)
    with database.engine.connect() as connection:
        now = connection.execute(_now()).scalar_one()
    period = periods.aligned_period(now, period_hours, align_seconds)
    if dry_run:
        with database.engine.connect() as connection:
            plan = pipeline.plan(connection, period, options)
        return _render_plan(plan, fmt)
    with (
        _summary_on_failure(fmt),
        graceful_stop(settings.stop_grace_seconds) as stop,
        progress_bar(settings.quiet) as progress,
    ):
        result = pipeline.aggregate(
            database.engine,
            period,
            metadata=_metadata(settings),
            options=options,
            stop=stop,
            progress=progress,
        )
    return _render_result(result, fmt)


def run_backfill(
    settings: Settings,
    since: str,
    until: str | None,
    bucket: str,
    timezone: str,
    force: bool,
    wait: str | None,
    fmt: str,
) -> int:
    tz = time_zone(timezone, "--timezone")
    since_at = periods.parse_instant(since, tz, "--since")
    until_at = periods.parse_instant(until, tz, "--until") if until else None
    options = _options(settings, wait)
    database = open_database(settings)
    with database.engine.connect() as connection:
        now = connection.execute(_now()).scalar_one()
    if until_at is None:
        until_at = periods.current_bucket_end(now, bucket, tz)
    buckets = periods.buckets(since_at, until_at, bucket, tz, now)
    with (
        _summary_on_failure(fmt),
        graceful_stop(settings.stop_grace_seconds) as stop,
        progress_bar(settings.quiet) as progress,
    ):
        result = pipeline.backfill(
            database.engine,
            buckets,
            force=force,
            metadata={**_metadata(settings), "bucket": bucket, "timezone": timezone},
            options=options,
            stop=stop,
            progress=progress,
            now=now,
        )
    return _render_result(result, fmt)


@contextmanager
def _summary_on_failure(fmt: str) -> Iterator[None]:
    """A job that failed, lost its lock or was stopped still prints what it committed; the
    error then goes on to its exit code (docs/spec/cli.md)."""
    try:
        yield
    except KpictlError as exc:
        if isinstance(exc.partial, pipeline.PipelineResult):
            _render_result(exc.partial, fmt)
        raise


def _now():
    from sqlalchemy import text

    return text("SELECT now()")


def _render_plan(plan: pipeline.Plan, fmt: str) -> int:
    document = {
        "dryRun": True,
        "periodStart": plan.period.start,
        "periodEnd": plan.period.end,
        "runLevel": plan.pending_runs,
        "productLevel": plan.products,
        "factoryLevel": 1,
        "terminalRuns": plan.terminal_runs,
        "invalidRuns": plan.invalid_runs,
    }
    if fmt == "json":
        output.emit_json(document)
    else:
        output.echo(f"Period: {plan.period.label()} (dry run, nothing written)")
        output.echo(f"Run level:     {plan.pending_runs} runs to snapshot")
        output.echo(f"Product level: {plan.products} products")
        output.echo(
            f"Factory level: 1 ({plan.terminal_runs} terminal runs, {plan.invalid_runs} invalid)"
        )
    return 0


def _render_result(result: pipeline.PipelineResult, fmt: str) -> int:
    if fmt == "json":
        output.emit_json(result.as_dict())
    else:
        output.echo(
            f"{result.job_type} {result.status}: {result.snapshots_created} snapshots "
            f"in {result.duration_ms} ms (job {result.job_id})"
        )
        if result.job_type == "backfill":
            output.echo(
                f"buckets: {len(result.periods)} computed, {result.skipped_buckets} skipped, "
                f"{len(result.failed_buckets)} failed"
            )
        if result.invalid_runs:
            output.echo(f"invalid runs left out: {result.invalid_runs}")
    return 0 if result.status == "completed" else 1
