"""`kpictl migrate`: kpictl's schema to head, to a revision, down, status, or offline SQL."""

from typing import Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, TextFormat, TextFormatOption
from kpictl.settings import Settings

app = typer.Typer()

EXAMPLES = """
Examples:

    kpictl migrate                      # upgrade to head (source tables must exist)
    kpictl migrate --with-sources       # standalone/demo database: create source tables too
    kpictl migrate --status             # exit 1 when behind head
    kpictl migrate --sql > kpictl.sql   # SQL for a DBA; touches no database
    kpictl migrate --downgrade base     # remove kpictl's tables (never source tables)
    kpictl migrate --downgrade base --yes  # ... even when they hold rows (back up first)
    kpictl migrate --adopt --sql        # review the adoption of an AFU-9 database
    kpictl migrate --adopt              # adopt it in place (back up first), then upgrade
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
    format: TextFormatOption = TextFormat.text,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take over an AFU-9 database in place (one transaction; docs/OPERATIONS.md).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="--downgrade: drop tables that hold rows without asking (back up first).",
        ),
    ] = False,
) -> int:
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.services.schema import migrate as service

    if adopt:
        return _adopt(
            settings,
            to=to,
            downgrade=downgrade,
            status=status,
            sql=sql,
            with_sources=with_sources,
            fmt=format,
        )
    if sql:
        text = service.offline_sql(
            downgrade or to, with_sources=with_sources, downgrade_from="head" if downgrade else None
        )
        output.echo(text.rstrip())
        return 0
    database = open_database(settings, schema_gate=False)
    if status:
        with database.engine.connect() as connection:
            state = service.status(connection)
            adoption = _pending_adoption(connection, settings)  # AFU-9 database not adopted
        document = {
            "current": state.current,
            "head": state.head,
            "upToDate": state.up_to_date,
            "pending": state.pending,
        }
        if adoption is not None:
            document["adoption"] = adoption
        if format == Format.json:
            output.emit_json(document)
        else:
            verdict = "up to date" if state.up_to_date else f"behind ({len(state.pending)} pending)"
            output.echo(
                f"current: {state.current or 'none'}\nhead:    {state.head}\nstatus:  {verdict}"
            )
            if adoption is not None:
                output.echo("AFU-9 tables found, not adopted; `kpictl migrate --adopt` would:")
                output.echo("\n".join(f"  - {line}" for line in adoption))
        return 0 if state.up_to_date else 1
    if downgrade:
        result = service.downgrade(database.engine, downgrade, confirm=_confirmation(yes))
    else:
        result = service.upgrade(database.engine, to, with_sources=with_sources)
    if format == Format.json:
        output.emit_json(result.__dict__)
    else:
        if result.sources_created:
            output.echo(f"created source tables: {', '.join(result.sources_created)}")
        _echo_repairs(result)
        output.echo(f"migrated: {result.before or 'base'} -> {result.after or 'base'}")
    if result.history_sources_missing:
        import logging

        logging.getLogger(__name__).warning(
            "history source tables missing (%s): `kpictl history fill` needs them",
            ", ".join(result.history_sources_missing),
        )
    return 0


def _confirmation(yes: bool):
    """`confirm` for a downgrade that drops tables holding rows: says what goes (stderr),
    then --yes, a "y" on a terminal, or no (never a prompt nobody can answer)."""

    def confirm(plan) -> bool:
        import logging
        import sys

        logging.getLogger(__name__).warning(
            "migrate --downgrade %s drops %s", plan.target, plan.describe()
        )
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        return typer.confirm("Drop these tables and their rows?", default=False, err=True)

    return confirm


def _echo_repairs(result) -> None:
    """What `migrate` found broken at head and put back (see `kpictl doctor`)."""
    from kpictl.cli import output

    for line in result.repaired:
        output.echo(f"repaired: {line}")
    for line in result.indexes_rebuilt:
        output.echo(f"rebuilt index concurrently: {line}")


# --- adoption of an AFU-9 database (docs/spec/adoption.md) ---


def _pending_adoption(connection, settings: Settings) -> list[str] | None:
    from kpictl.services.adoption import detect

    return detect.pending_adoption(connection, settings.source_timezone)


def _adopt(
    settings: Settings,
    *,
    to: str,
    downgrade: str | None,
    status: bool,
    sql: bool,
    with_sources: bool,
    fmt: Format,
) -> int:
    """`migrate --adopt [--sql]`: adopt in one transaction, then upgrade to head."""

    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.errors import UsageError
    from kpictl.redact import secrets_of_url
    from kpictl.services.jobs.rows import job_metadata
    from kpictl.services.schema import migrate as service

    for given, name in ((downgrade, "--downgrade"), (status, "--status"), (to != "head", "--to")):
        if given:
            raise UsageError(
                f"--adopt cannot be combined with {name}: it brings the database to head"
            )
    database = open_database(settings, schema_gate=False)
    metadata = job_metadata(settings.argv, secrets_of_url(settings.target.url))
    if sql:
        output.echo(
            service.adoption_sql(
                database.engine, source_timezone=settings.source_timezone, metadata=metadata
            ).rstrip()
        )
        return 0
    result = service.adopt(
        database.engine,
        source_timezone=settings.source_timezone,
        metadata=metadata,
        with_sources=with_sources,
    )
    adoption, migration = result.adoption, result.migration
    if fmt == Format.json:
        output.emit_json({"adoption": adoption.__dict__, **migration.__dict__})
        return 0
    if adoption.adopted:
        output.echo("adopted the AFU-9 database:")
        output.echo("\n".join(f"  - {line}" for line in adoption.summary))
        output.echo(
            f"removed {adoption.duplicates_removed} duplicate snapshots; "
            f"kept {adoption.snapshots_kept}"
        )
        output.echo(f"abandoned {adoption.jobs_abandoned} jobs of the old scheduler")
        output.echo(f"adopt job: {adoption.job_id}")
    else:
        output.echo(f"nothing to adopt ({adoption.reason})")
    if migration.sources_created:
        output.echo(f"created source tables: {', '.join(migration.sources_created)}")
    _echo_repairs(migration)
    output.echo(f"migrated: {migration.before or 'base'} -> {migration.after or 'base'}")
    if migration.history_sources_missing:
        import logging

        logging.getLogger(__name__).warning(
            "history source tables missing (%s): `kpictl history fill` needs them",
            ", ".join(migration.history_sources_missing),
        )
    return 0
