"""`kpictl doctor`: connection, server, migrations and source schema, one verdict a line."""

from typing import TYPE_CHECKING

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, TextFormat, TextFormatOption
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.maintenance.doctor import ReadReplica

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
    from kpictl.services.maintenance.doctor import run_checks

    database = open_database(settings, schema_gate=False)
    shown = _settings_shown(settings)
    report = run_checks(
        database.engine,
        source=database.source,
        shown_url=database.shown,
        settings=shown,
        replica=_replica(settings),
    )
    if format == Format.json:
        output.emit_json(render.document(report))
    else:
        output.echo_lines(render.check_lines(report))
    return render.exit_code(report)


def _settings_shown(settings: Settings) -> list[tuple[str, str]]:
    """Every setting with its value and where it came from."""
    from kpictl.config import describe

    shown = describe(settings.config, settings.chosen)
    origin = settings.source_timezone_origin
    shown.append(("source_timezone", f"{settings.source_timezone} (from {origin})"))
    return shown


def _replica(settings: Settings) -> "ReadReplica | None":
    """The read URL's database, when one is set (--read-url, KPICTL_READ_DATABASE_URL, ...)."""
    from dataclasses import replace

    from kpictl.cli.database import open_database
    from kpictl.services.maintenance.doctor import ReadReplica

    if settings.read_target is None:
        return None
    database = open_database(replace(settings, target=settings.read_target), schema_gate=False)
    return ReadReplica(database.engine, database.source, database.shown)
