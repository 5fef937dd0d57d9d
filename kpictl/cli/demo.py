"""`kpictl demo`: try kpictl in one command, on the embedded server by default."""

from typing import Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import ERROR_AFTER_SECONDS, WARN_AFTER_SECONDS
from kpictl.settings import Settings

app = typer.Typer()

HELP = """Load a sample code factory and compute its KPIs, end to end.

On the target database (the embedded server when no URL is set): create the source tables if
absent, migrate, load a deterministic sample (6 repositories, 14 days of runs, 5 tenants with 12
weeks of reports), aggregate the last week, backfill daily buckets, fill the KPI history, then
print the KPIs and their freshness. Re-running adds no sample rows; --reset starts over.

Examples:

    kpictl demo

    kpictl demo --reset

    KPICTL_DATABASE_URL=postgresql://localhost/scratch kpictl demo
"""

NEXT_STEPS = """
Next:
  kpictl kpis --level product              per-product KPIs
  kpictl freshness --format prometheus     monitoring output
  kpictl jobs                              what ran, how long, how many snapshots
  kpictl history export --tenant acme      a tenant's weekly KPI history (CSV)
  docs/OPERATIONS.md, docs/deploy/         production setup and timers"""


@kpictl_command(app, "demo", help=HELP)
def demo(
    settings: Settings,
    reset: Annotated[bool, typer.Option("--reset", help="Remove the sample rows first.")] = False,
) -> int:
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.progress import progress_bar
    from kpictl.cli.render import freshness as render_freshness
    from kpictl.cli.render import kpis as render_kpis
    from kpictl.cli.signals import graceful_stop
    from kpictl.kpis import KPIS
    from kpictl.redact import secrets_of_url
    from kpictl.services.jobs.rows import job_metadata
    from kpictl.services.maintenance import demo as service
    from kpictl.services.reports import freshness
    from kpictl.services.reports import latest as kpi_values

    database = open_database(settings, schema_gate=False)
    metadata = job_metadata(settings.argv, secrets_of_url(settings.target.url))
    with (
        graceful_stop(settings.stop_grace_seconds) as stop,
        progress_bar(settings.quiet) as progress,
    ):
        progress.start("demo", len(service.STEPS))
        result = service.run_demo(
            database.engine,
            reset=reset,
            metadata=metadata,
            stop=stop,
            step_done=lambda _: progress.advance(1),
        )
    with database.engine.connect() as connection:
        values = kpi_values.latest_values(connection, level="factory")
        report = freshness.check_freshness(
            connection,
            [kpi for kpi in KPIS if kpi.level == "factory"],
            level="factory",
            warn_after_seconds=WARN_AFTER_SECONDS,
            error_after_seconds=ERROR_AFTER_SECONDS,
        )
    loaded = sum(result.sample_rows.values())
    output.echo(
        f"Sample: {loaded} rows loaded"
        if loaded
        else "Sample: already loaded (use --reset to start over)"
    )
    output.echo(
        f"Aggregated the last week ({result.aggregate_snapshots} snapshots); backfilled "
        f"{result.backfill_buckets} daily buckets ({result.backfill_skipped} already done); "
        f"filled {result.history_rows} weeks of KPI history for {result.history_filled} tenants.\n"
    )
    columns, rows = render_kpis.table(values, "factory")
    output.emit_table(columns, rows, title="factory KPIs (latest)")
    output.echo()
    output.emit_table(
        render_freshness.TABLE_COLUMNS, render_freshness.table_rows(report), title="freshness"
    )
    output.echo(NEXT_STEPS)
    return 0
