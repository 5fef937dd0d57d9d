"""`kpictl migrate`: kpictl's schema to head, to a revision, down, status, or offline SQL."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, TextFormat, TextFormatOption
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.schema.migrate import DowngradePlan

app = typer.Typer()
log = logging.getLogger(__name__)

EXAMPLES = """
Examples:

    kpictl migrate                     # to head (source tables must exist)
    kpictl migrate --with-sources      # demo database: source tables too
    kpictl migrate --status            # exit 1 when behind head
    kpictl migrate --sql > kpictl.sql  # SQL for a DBA; no database
    kpictl migrate --sql --from 0005   # ... only the revisions after 0005
    kpictl migrate --downgrade base    # drop kpictl's tables (not sources)
    kpictl migrate --downgrade base --yes  # ... even with rows (back up!)
    kpictl migrate --adopt --sql       # review adopting an AFU-9 database
    kpictl migrate --adopt             # adopt in place, then upgrade
"""

ToOption = Annotated[
    str,
    typer.Option(
        "--to", help="Target revision; with --sql also FROM:TO (e.g. 0003:head).", metavar="REV"
    ),
]
FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="--sql: the database is at REV; print only the later revisions' SQL.",
        metavar="REV",
    ),
]
DowngradeOption = Annotated[
    str | None, typer.Option("--downgrade", help="Downgrade to REV (e.g. base).", metavar="REV")
]
StatusFlag = Annotated[
    bool, typer.Option("--status", help="Show current vs head; exit 1 when behind.")
]
SqlFlag = Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")]
WithSourcesFlag = Annotated[
    bool, typer.Option("--with-sources", help="Also create the source tables when absent.")
]
AdoptFlag = Annotated[
    bool,
    typer.Option(
        "--adopt",
        help="Take over an AFU-9 database in place (one transaction; docs/OPERATIONS.md).",
    ),
]
YesFlag = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="--downgrade: drop tables that hold rows without asking (back up first).",
    ),
]


@kpictl_command(app, "migrate", help="Create or upgrade kpictl's tables (Alembic).\n\n" + EXAMPLES)
def migrate(
    settings: Settings,
    to: ToOption = "head",
    start: FromOption = None,
    downgrade: DowngradeOption = None,
    status: StatusFlag = False,
    sql: SqlFlag = False,
    with_sources: WithSourcesFlag = False,
    format: TextFormatOption = TextFormat.table,
    adopt: AdoptFlag = False,
    yes: YesFlag = False,
) -> int:
    if sql and format == Format.json:
        from kpictl.errors import UsageError

        raise UsageError("--sql prints SQL, not JSON: leave out --format json")
    if adopt:
        _refuse_with_adopt(to=to, start=start, downgrade=downgrade, status=status)
        return _adopt(settings, sql=sql, with_sources=with_sources, format=format)
    start, to = _revision_range(start, to, sql=sql, downgrade=downgrade)
    if sql:
        return _print_offline_sql(to, downgrade, start, with_sources=with_sources)
    if status:
        return _status(settings, format)
    return _migrate(settings, to, downgrade, with_sources=with_sources, yes=yes, format=format)


def _print_offline_sql(
    to: str, downgrade: str | None, start: str | None, *, with_sources: bool
) -> int:
    """The SQL of an upgrade to `to` (from `start`, else from nothing) or of a downgrade from
    head, for a DBA; no database."""
    from kpictl.cli import output
    from kpictl.services.schema.migrate import offline_sql

    text = offline_sql(
        downgrade or to,
        with_sources=with_sources,
        downgrade_from="head" if downgrade else None,
        upgrade_from=start,
    )
    output.echo(text.rstrip())
    return 0


def _status(settings: Settings, format: Format) -> int:
    """Current revision vs head, and what an adoption would do on an AFU-9 database."""
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.render import migrate as render
    from kpictl.services.adoption.detect import pending_adoption
    from kpictl.services.schema.migrate import status

    with open_database(settings, schema_gate=False).engine.connect() as connection:
        state = status(connection)
        adoption = pending_adoption(connection, settings.source_timezone)
    if format == Format.json:
        output.emit_json(render.status_document(state, adoption))
    else:
        output.echo_lines(render.status_lines(state, adoption))
    return render.status_exit_code(state)


def _migrate(
    settings: Settings,
    to: str,
    downgrade: str | None,
    *,
    with_sources: bool,
    yes: bool,
    format: Format,
) -> int:
    from kpictl.cli.database import open_database
    from kpictl.services.schema import migrate as service

    engine = open_database(settings, schema_gate=False).engine
    if downgrade:
        result = service.downgrade(engine, downgrade, confirm=_confirmation(yes))
    else:
        result = service.upgrade(engine, to, with_sources=with_sources)
    _show_migration(result, format)
    return 0


def _show_migration(result: Any, format: Format) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import migrate as render

    if format == Format.json:
        output.emit_json(render.migration_document(result))
    else:
        output.echo_lines(render.migration_lines(result))
    _warn_history_sources_missing(result)


def _warn_history_sources_missing(result: Any) -> None:
    if result.history_sources_missing:
        log.warning(
            "history source tables missing (%s): `kpictl history fill` needs them",
            ", ".join(result.history_sources_missing),
        )


def _confirmation(yes: bool) -> Callable[["DowngradePlan"], bool]:
    """`confirm` for a downgrade that drops tables holding rows: says what goes (stderr),
    then --yes, a "y" on a terminal, or no (never a prompt nobody can answer)."""

    def confirm(plan: "DowngradePlan") -> bool:
        import sys

        log.warning("migrate --downgrade %s drops %s", plan.target, plan.describe())
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False
        return typer.confirm("Drop these tables and their rows?", default=False, err=True)

    return confirm


# --- adoption of an AFU-9 database (docs/spec/adoption.md) ---


def _refuse_with_adopt(*, to: str, start: str | None, downgrade: str | None, status: bool) -> None:
    """--adopt brings the database to head: no other target, no status."""
    from kpictl.errors import UsageError

    refused = {"--downgrade": downgrade, "--status": status, "--to": to != "head", "--from": start}
    for name, given in refused.items():
        if given:
            raise UsageError(
                f"--adopt cannot be combined with {name}: it brings the database to head"
            )


def _adopt(settings: Settings, *, sql: bool, with_sources: bool, format: Format) -> int:
    """`migrate --adopt [--sql]`: adopt in one transaction, then upgrade to head."""
    from kpictl.cli import output, running
    from kpictl.cli.database import open_database
    from kpictl.cli.render import migrate as render
    from kpictl.services.schema import migrate as service

    engine = open_database(settings, schema_gate=False).engine
    zone, metadata = settings.source_timezone, running.job_metadata(settings)
    if sql:
        output.echo(service.adoption_sql(engine, source_timezone=zone, metadata=metadata).rstrip())
        return 0
    result = service.adopt(
        engine, source_timezone=zone, metadata=metadata, with_sources=with_sources
    )
    if format == Format.json:
        output.emit_json(render.adoption_document(result))
        return 0
    output.echo_lines(render.adoption_lines(result.adoption))
    output.echo_lines(render.migration_lines(result.migration))
    _warn_history_sources_missing(result.migration)
    return 0


def _revision_range(
    start: str | None, to: str, *, sql: bool, downgrade: str | None
) -> tuple[str | None, str]:
    """`--from REV` or Alembic's `--to FROM:TO`: only with --sql, never with --downgrade."""
    from kpictl.errors import UsageError

    if ":" in to:
        if start is not None:
            raise UsageError("give the start once: --from REV or --to FROM:TO, not both")
        start, _, to = to.partition(":")
        start, to = start or "base", to or "head"
    if start is not None and (not sql or downgrade):
        raise UsageError(
            "--from (or --to FROM:TO) prints the SQL from a revision: use it with --sql, "
            "without --downgrade"
        )
    return start, to
