"""`kpictl migrate`: kpictl's schema to head, to a revision, down, status, or offline SQL."""

from typing import Annotated

import typer

from kpictl.cli.options import TextFormat, kpictl_command
from kpictl.settings import Settings

app = typer.Typer()

EXAMPLES = """
Examples:

    kpictl migrate                      # upgrade to head (source tables must exist)
    kpictl migrate --with-sources       # standalone/demo database: create source tables too
    kpictl migrate --status             # exit 1 when behind head
    kpictl migrate --sql > kpictl.sql   # SQL for a DBA; touches no database
    kpictl migrate --downgrade base     # remove kpictl's tables (never source tables)
"""


@kpictl_command(app, "migrate", help="Create or upgrade kpictl's tables (Alembic).\n\n" + EXAMPLES)
def migrate(
    settings: Settings,
    to: Annotated[str, typer.Option("--to", help="Target revision.", metavar="REV")] = "head",
    downgrade: Annotated[
        str | None, typer.Option("--downgrade", help="Downgrade to REV (e.g. base).", metavar="REV")
    ] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show current vs head; exit 1 when behind.")
    ] = False,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it.")
    ] = False,
    with_sources: Annotated[
        bool, typer.Option("--with-sources", help="Also create the source tables when absent.")
    ] = False,
    format: Annotated[
        TextFormat, typer.Option("--format", help="Output format.")
    ] = TextFormat.text,
) -> int:
    from kpictl.cli import output
    from kpictl.db.engine import open_database
    from kpictl.services import migrate as service

    if sql:
        text = service.offline_sql(
            downgrade or to, with_sources=with_sources, downgrade_from="head" if downgrade else None
        )
        output.echo(text.rstrip())
        return 0
    database = open_database(settings)
    if status:
        with database.engine.connect() as connection:
            state = service.status(connection)
        document = {
            "current": state.current,
            "head": state.head,
            "upToDate": state.up_to_date,
            "pending": state.pending,
        }
        if format is TextFormat.json:
            output.emit_json(document)
        else:
            verdict = "up to date" if state.up_to_date else f"behind ({len(state.pending)} pending)"
            output.echo(
                f"current: {state.current or 'none'}\nhead:    {state.head}\nstatus:  {verdict}"
            )
        return 0 if state.up_to_date else 1
    if downgrade:
        result = service.downgrade(database.engine, downgrade)
    else:
        result = service.upgrade(database.engine, to, with_sources=with_sources)
    if format is TextFormat.json:
        output.emit_json(result.__dict__)
    else:
        if result.sources_created:
            output.echo(f"created source tables: {', '.join(result.sources_created)}")
        output.echo(f"migrated: {result.before or 'base'} -> {result.after or 'base'}")
    if result.history_sources_missing:
        import logging

        logging.getLogger(__name__).warning(
            "history source tables missing (%s): `kpictl history fill` needs them",
            ", ".join(result.history_sources_missing),
        )
    return 0
