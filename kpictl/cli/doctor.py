"""`kpictl doctor`: connection, server, migrations and source schema, one verdict a line."""

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, TextFormat, TextFormatOption
from kpictl.settings import Settings

app = typer.Typer()


@kpictl_command(
    app,
    "doctor",
    help="Check the database, migrations and source tables. Exit 0 healthy, 1 unhealthy, "
    "69 unreachable.\n\nExamples:\n\n    kpictl doctor\n\n    kpictl doctor --format json",
)
def doctor(
    settings: Settings,
    format: TextFormatOption = TextFormat.table,
) -> int:
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.render import doctor as render
    from kpictl.config import describe
    from kpictl.services.maintenance.doctor import run_checks

    database = open_database(settings, schema_gate=False)
    shown = describe(settings.config, settings.chosen)
    shown.append(
        ("source_timezone", f"{settings.source_timezone} (from {settings.source_timezone_origin})")
    )
    report = run_checks(
        database.engine, source=database.source, shown_url=database.shown, settings=shown
    )
    if format == Format.json:
        output.emit_json(render.document(report))
    else:
        output.echo_lines(render.check_lines(report))
    return render.exit_code(report)
