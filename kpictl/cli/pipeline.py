"""`kpictl aggregate` and `kpictl backfill`: the aggregation pipeline."""

from typing import Annotated

import typer

from kpictl.cli.options import TextFormat, kpictl_command, whole_number
from kpictl.settings import Settings

app = typer.Typer()

WaitOption = Annotated[
    str | None,
    typer.Option(
        "--wait",
        metavar="[SECONDS]",
        help="If another run holds the pipeline lock, wait for it (for ever, or SECONDS) "
        "instead of exiting 75.",
        show_default=False,
    ),
]
FormatOption = Annotated[TextFormat, typer.Option("--format", help="Output format.")]


@kpictl_command(
    app,
    "aggregate",
    help="Compute run, product and factory KPIs for the last N hours, then refresh the "
    "materialized views. Safe to re-run: the same alignment slot writes the same keys.\n\n"
    "Exit codes: 0 done, 1 failed, 75 another run holds the lock, 143/130 stopped by "
    "SIGTERM/SIGINT.\n\n"
    "Examples:\n\n"
    "    kpictl aggregate                        # last 24 h, every 5 min from a timer\n\n"
    "    kpictl aggregate --period-hours 168     # catch up on a week\n\n"
    "    kpictl aggregate --dry-run --format json\n\n"
    "    kpictl aggregate --wait 120             # wait up to 2 min for a running cycle",
)
def aggregate(
    settings: Settings,
    period_hours: Annotated[
        int,
        typer.Option(
            "--period-hours",
            envvar="KPI_AGGREGATION_PERIOD_HOURS",
            parser=whole_number,
            metavar="HOURS",
            help="Length of the period ending now (1-8760).",
        ),
    ] = 24,
    align: Annotated[
        str,
        typer.Option("--align", help="Round the period end down to this (e.g. 5m, 1h, 300)."),
    ] = "5m",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be computed; write nothing.")
    ] = False,
    wait: WaitOption = None,
    format: FormatOption = TextFormat.text,
) -> int:
    from kpictl.cli import pipeline_run

    return pipeline_run.run_aggregate(settings, period_hours, align, dry_run, wait, format.value)


@kpictl_command(
    app,
    "backfill",
    help="Compute KPIs for calendar buckets (hour, day or week, aligned in --timezone) covering "
    "[--since, --until). Each bucket is committed on its own; buckets already computed are "
    "skipped unless --force; a failed bucket is reported and the rest continue.\n\n"
    "Examples:\n\n"
    "    kpictl backfill --since 2026-01-01 --until 2026-02-01\n\n"
    "    kpictl backfill --since 2026-03-01 --until 2026-04-01 --timezone Europe/Berlin\n\n"
    "    kpictl backfill --since 2026-01-05 --until 2026-01-06 --bucket hour --force",
)
def backfill(
    settings: Settings,
    since: Annotated[
        str, typer.Option("--since", help="Start: a date or ISO date-time (in --timezone).")
    ],
    until: Annotated[
        str | None,
        typer.Option("--until", help="End, exclusive (default: the end of the current bucket)."),
    ] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="hour, day or week.")] = "day",
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA zone the buckets align to.")
    ] = "UTC",
    force: Annotated[
        bool, typer.Option("--force", help="Recompute buckets already computed.")
    ] = False,
    wait: WaitOption = None,
    format: FormatOption = TextFormat.text,
) -> int:
    from kpictl.cli import pipeline_run

    return pipeline_run.run_backfill(
        settings, since, until, bucket, timezone, force, wait, format.value
    )
