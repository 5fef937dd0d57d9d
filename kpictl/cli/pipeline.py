"""`kpictl aggregate` and `kpictl backfill`: the aggregation pipeline."""

import logging
from typing import Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    AlignOption,
    Bucket,
    PeriodHoursOption,
    SinceInstantOption,
    TextFormat,
    TextFormatOption,
    TimezoneOption,
    UntilInstantOption,
    WaitOption,
)
from kpictl.settings import Settings

app = typer.Typer()

DryRunFlag = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be computed; write nothing.")
]
BucketOption = Annotated[Bucket, typer.Option("--bucket", help="Calendar bucket.")]
ForceFlag = Annotated[bool, typer.Option("--force", help="Recompute buckets already computed.")]
JobsOption = Annotated[
    str,
    typer.Option(
        "--jobs",
        help="Work on this many connections at once (1-16), or auto: the server's "
        "max_parallel_workers or the CPU count, the smaller. backfill: buckets; aggregate: the "
        "run level of a cycle that scans its whole period.",
        metavar="N",
    ),
]
FullRefreshFlag = Annotated[
    bool,
    typer.Option(
        "--full-refresh",
        help="Recompute every key of the window, ignoring what earlier runs computed (the job "
        "row records it).",
    ),
]


@kpictl_command(
    app,
    "aggregate",
    help="Compute run, product and factory KPIs for the last N hours, then refresh the "
    "materialized views. Safe to re-run: the same alignment slot writes the same keys.\n\n"
    "Exit codes: 0 done, 1 failed, 75 another run holds the lock, 143/130 stopped by "
    "SIGTERM/SIGINT.\n\n"
    "Examples:\n\n"
    "    kpictl aggregate                     # last 24 h, every 5 min (timer)\n\n"
    "    kpictl aggregate --period-hours 168  # catch up on a week\n\n"
    "    kpictl aggregate --dry-run --format json\n\n"
    "    kpictl aggregate --wait 120          # wait up to 2 min for a running one\n\n"
    "    kpictl aggregate --full-refresh      # after fixing data or snapshots",
)
def aggregate(
    settings: Settings,
    period_hours: PeriodHoursOption = None,
    align: AlignOption = "5m",
    dry_run: DryRunFlag = False,
    full_refresh: FullRefreshFlag = False,
    jobs: JobsOption = "1",
    wait: WaitOption = None,
    format: TextFormatOption = TextFormat.table,
) -> int:
    from kpictl.cli import pipeline_run
    from kpictl.cli.options import duration_seconds, wait_seconds

    align_seconds = int(duration_seconds(align, "--align"))
    hours = _period_hours(settings, period_hours)
    workers = pipeline_run.jobs_value(jobs)
    run = pipeline_run.RunFlags(wait_seconds(wait), full_refresh, format, workers)
    return pipeline_run.run_aggregate(settings, hours, align_seconds, dry_run=dry_run, run=run)


@kpictl_command(
    app,
    "backfill",
    help="Compute KPIs for calendar buckets (hour, day or week, aligned in --timezone) covering "
    "[--since, --until). Each bucket is committed on its own; buckets already computed are "
    "skipped unless --force; a failed bucket is reported and the rest continue. --full-refresh "
    "recomputes every key of every bucket, as --force does, and records it in the job row.\n\n"
    "Examples:\n\n"
    "    kpictl backfill --since 2026-01-01 --until 2026-02-01\n\n"
    "    kpictl backfill --since 2026-03-01 --timezone Europe/Berlin\n\n"
    "    kpictl backfill --since 2026-01-05 --until 2026-01-06 --bucket hour\n\n"
    "    kpictl backfill --since 2025-12-01 --jobs auto   # catch up on a year",
)
def backfill(
    settings: Settings,
    since: SinceInstantOption,
    until: UntilInstantOption = None,
    bucket: BucketOption = Bucket.day,
    timezone: TimezoneOption = "UTC",
    force: ForceFlag = False,
    full_refresh: FullRefreshFlag = False,
    jobs: JobsOption = "1",
    wait: WaitOption = None,
    format: TextFormatOption = TextFormat.table,
) -> int:
    from kpictl.cli import pipeline_run
    from kpictl.cli.options import wait_seconds

    wanted = pipeline_run.backfill_range(since, until, bucket.value, timezone)
    workers = pipeline_run.jobs_value(jobs)
    run = pipeline_run.RunFlags(wait_seconds(wait), full_refresh, format, workers)
    return pipeline_run.run_backfill(settings, wanted, force=force, run=run)


def _period_hours(settings: Settings, flag: str | None) -> int:
    """--period-hours, else KPICTL_PERIOD_HOURS (or its old name, with a warning), else the
    config file's period_hours, else 24."""
    from kpictl.cli.options import whole_number
    from kpictl.config import DEPRECATED_ENV
    from kpictl.services.pipeline.periods import MAX_PERIOD_HOURS

    chosen = settings.setting("period_hours", flag)
    if chosen.origin in DEPRECATED_ENV:
        logging.getLogger(__name__).warning(
            "%s is deprecated: set %s instead", chosen.origin, DEPRECATED_ENV[chosen.origin]
        )
    return whole_number(str(chosen.value), chosen.name, within=(1, MAX_PERIOD_HOURS))
