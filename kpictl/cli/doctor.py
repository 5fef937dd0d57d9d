"""`kpictl doctor`: connection, server, migrations and source schema, one verdict a line."""

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, TextFormat, TextFormatOption
from kpictl.errors import ExitCode
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
    format: TextFormatOption = TextFormat.text,
) -> int:
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.services.maintenance.doctor import run_checks

    database = open_database(settings, schema_gate=False)
    report = run_checks(database.engine, source=database.source, shown_url=database.shown)
    if format == Format.json:
        output.emit_json(report.as_dict())
    else:
        width = max(len(check.name) for check in report.checks)
        for check in report.checks:
            output.echo(f"{check.status.upper():4}  {check.name:<{width}}  {check.detail}")
        output.echo(f"\n{'healthy' if report.healthy else 'unhealthy'}")
    if not report.reachable:
        return ExitCode.UNAVAILABLE
    return ExitCode.OK if report.healthy else ExitCode.FAILED
