"""`kpictl demo`: try kpictl in one command, on the embedded server by default."""

from typing import TYPE_CHECKING, Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from kpictl.services.maintenance.demo import DemoResult, FactoryOverview

app = typer.Typer()

HELP = """Load a sample code factory and compute its KPIs, end to end.

On the target database (the embedded server when no URL is set): create the source tables if
absent, migrate, load a deterministic sample (6 repositories, 14 days of runs, 5 tenants with 12
weeks of reports), aggregate the last week, backfill daily buckets, fill the KPI history, then
print the KPIs and their freshness. Re-running adds no sample rows; --reset starts over.

Examples:

    kpictl demo

    kpictl demo --reset

    kpictl demo --stop                # stop the embedded server it left

    KPICTL_DATABASE_URL=postgresql://localhost/scratch kpictl demo
"""

ResetFlag = Annotated[bool, typer.Option("--reset", help="Remove the sample rows first.")]
StopFlag = Annotated[
    bool, typer.Option("--stop", help="Stop the embedded server and exit (its data is kept).")
]


@kpictl_command(app, "demo", help=HELP)
def demo(settings: Settings, reset: ResetFlag = False, stop_server: StopFlag = False) -> int:
    if stop_server:
        return _stop_embedded(settings)
    from kpictl.cli.database import open_database
    from kpictl.cli.options import ERROR_AFTER_SECONDS, WARN_AFTER_SECONDS
    from kpictl.services.maintenance.demo import factory_overview

    engine = open_database(settings, schema_gate=False).engine
    result = _run_demo(settings, engine, reset=reset)
    overview = factory_overview(
        engine, warn_after_seconds=WARN_AFTER_SECONDS, error_after_seconds=ERROR_AFTER_SECONDS
    )
    _show(result, overview)
    return 0


def _run_demo(settings: Settings, engine: "Engine", *, reset: bool) -> "DemoResult":
    """Every step of the demo, one tick of the progress bar each."""
    from kpictl.cli import running
    from kpictl.services.maintenance import demo as service

    metadata = running.job_metadata(settings)
    with running.long_job(settings) as (stop, progress):
        progress.start("demo", len(service.STEPS))
        return service.run_demo(
            engine,
            reset=reset,
            metadata=metadata,
            stop=stop,
            step_done=lambda _: progress.advance(1),
        )


def _show(result: "DemoResult", overview: "FactoryOverview") -> None:
    from kpictl.cli import output
    from kpictl.cli.render import demo as render
    from kpictl.cli.render import freshness as render_freshness
    from kpictl.cli.render import kpis as render_kpis

    output.echo_lines(render.summary_lines(result))
    columns, rows = render_kpis.table(overview.values, "factory")
    output.emit_table(columns, rows, title="factory KPIs (latest)")
    output.echo()
    freshness_rows = render_freshness.table_rows(overview.freshness)
    output.emit_table(render_freshness.TABLE_COLUMNS, freshness_rows, title="freshness")
    output.echo(render.NEXT_STEPS)


def _stop_embedded(settings: Settings) -> int:
    from kpictl.cli import output
    from kpictl.cli.render import demo as render
    from kpictl.db.embedded import default_data_dir, stop_embedded

    stopped = stop_embedded(settings.data_dir)
    output.echo(render.stopped_line(stopped, (settings.data_dir or default_data_dir()) / "pgdata"))
    return 0
