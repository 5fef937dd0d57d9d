"""`kpictl history fill` and `kpictl history export`: the per-tenant KPI history."""

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from kpictl.cli.commands import kpictl_command, new_app
from kpictl.cli.options import (
    MAX_CONCURRENCY,
    MAX_EXPORT_LIMIT,
    ConcurrencyOption,
    ExportFormatOption,
    ExportLimitOption,
    Format,
    Grain,
    OutputFileOption,
    RequiredTenantOption,
    SinceDateOption,
    TenantOption,
    TenantsOption,
    TextFormat,
    TextFormatOption,
    UntilDateOption,
)
from kpictl.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer()
history_app = new_app(
    "history",
    help="The per-tenant KPI history: fill it from AVI reports and VLI audits, export it.\n\n"
    "Examples:\n\n"
    "    kpictl history fill\n\n"
    "    kpictl history export --tenant acme --format csv",
)
app.add_typer(history_app)
log = logging.getLogger(__name__)

AllRowsFlag = Annotated[
    bool, typer.Option("--all", help="Every row in range, ignoring --limit (csv, json).")
]
GrainOption = Annotated[Grain, typer.Option("--grain", help="Row per week, month or quarter.")]
RoleOption = Annotated[
    str,
    typer.Option("--role", help="An existing database role.", metavar="ROLE", show_default=False),
]


@kpictl_command(
    history_app,
    "fill",
    help="Write each tenant's KPI history row for its latest AVI report week (or, with --since, "
    "for every report week in range). Exit 0 ok (NO_AVI skips allowed), 1 a tenant failed or "
    "the one tenant asked for has no report, 77 the database refused every tenant.\n\n"
    "Examples:\n\n"
    "    kpictl history fill\n\n"
    "    kpictl history fill --tenant acme --format json\n\n"
    "    kpictl history fill --since 2026-01-05 --until 2026-06-29 --concurrency 8",
)
def fill(
    settings: Settings,
    tenant: TenantOption = None,
    since: SinceDateOption = None,
    until: UntilDateOption = None,
    concurrency: ConcurrencyOption = "4",
    format: TextFormatOption = TextFormat.table,
) -> int:
    from kpictl.cli.options import whole_number
    from kpictl.cli.render.history import fill_exit_code
    from kpictl.services.history.fill import FillOptions
    from kpictl.services.history.tenants import parse_tenant_argument

    workers = whole_number(concurrency, "--concurrency", within=(1, MAX_CONCURRENCY))
    argument = parse_tenant_argument(tenant) if tenant is not None else None
    since_date, until_date = _fill_range(since, until)
    options = FillOptions(since=since_date, until=until_date, concurrency=workers)
    run = _fill_with_job(settings, options, argument, format)
    _show_fill(run, format, single=argument is not None)
    return fill_exit_code(run)


@kpictl_command(
    history_app,
    "export",
    help="Print one tenant's KPI history, oldest first: the newest --limit weeks (or months, "
    "quarters). Streams; --output writes a file atomically.\n\n"
    "Examples:\n\n"
    "    kpictl history export --tenant acme --format csv > acme.csv\n\n"
    "    kpictl history export --tenant acme --grain quarter --format json\n\n"
    "    kpictl history export --tenant acme --all --output acme-history.csv",
)
def export(
    settings: Settings,
    tenant: RequiredTenantOption,
    format: ExportFormatOption = None,
    limit: ExportLimitOption = "52",
    all_rows: AllRowsFlag = False,
    since: SinceDateOption = None,
    until: UntilDateOption = None,
    grain: GrainOption = Grain.week,
    output_path: OutputFileOption = None,
) -> int:
    from kpictl.cli.options import date_range, output_file, whole_number
    from kpictl.services.history.export import ExportQuery
    from kpictl.services.history.tenants import parse_tenant_argument

    count = whole_number(limit, "--limit", within=(1, MAX_EXPORT_LIMIT))
    argument = parse_tenant_argument(tenant)
    since_date, until_date = date_range(since, until)
    chosen = _export_format(format, all_rows=all_rows, to_stdout=output_path is None)
    query = ExportQuery(
        limit=None if all_rows else count, since=since_date, until=until_date, grain=grain.value
    )
    _export(settings, argument, query, chosen, output_file(output_path))
    return 0


@kpictl_command(
    history_app,
    "grant",
    help="Let a database role read these tenants' history rows, and only theirs: the row-level "
    "security policy decides by the connected role, so no SET can widen it (docs/SECURITY.md). "
    "Run as the owner of kpictl's tables. Granting again changes nothing.\n\n"
    "Examples:\n\n"
    "    kpictl history grant --tenant acme --role kpi_dashboard\n\n"
    "    kpictl history grant --tenant acme --tenant globex --role grafana",
)
def grant(settings: Settings, tenant: TenantsOption, role: RoleOption) -> int:
    from kpictl.cli import output
    from kpictl.cli.render import history as render
    from kpictl.services.history import grants

    arguments, role_name = _grant_arguments(tenant, role)
    with _open(settings).begin() as conn:
        granted_role, changes = grants.grant(conn, arguments, role_name)
    output.echo_lines(render.grant_lines(changes, role_name))
    _warn_about_role(granted_role, role_name)
    return 0


@kpictl_command(
    history_app,
    "revoke",
    help="Take these tenants' history rows away from a database role (see `history grant`). "
    "Revoking what was not granted changes nothing.\n\n"
    "Examples:\n\n"
    "    kpictl history revoke --tenant acme --role kpi_dashboard",
)
def revoke(settings: Settings, tenant: TenantsOption, role: RoleOption) -> int:
    from kpictl.cli import output
    from kpictl.cli.render import history as render
    from kpictl.services.history import grants

    arguments, role_name = _grant_arguments(tenant, role)
    with _open(settings).begin() as conn:
        changes = grants.revoke(conn, arguments, role_name)
    output.echo_lines(render.revoke_lines(changes, role_name))
    return 0


# --- history fill --------------------------------------------------------------------------


def _fill_range(since: str | None, until: str | None) -> tuple[Any, Any]:
    """--since / --until as dates; --until alone is refused (it bounds a backfill range)."""
    from kpictl.cli.options import date_range
    from kpictl.errors import UsageError

    since_date, until_date = date_range(since, until)
    if until_date is not None and since_date is None:
        raise UsageError(f"invalid value for --until: {until} needs --since (a backfill range)")
    return since_date, until_date


def _fill_with_job(settings: Settings, options: Any, argument: Any, format: Format) -> Any:
    """Run the fill as one `history_fill` job row, with a progress bar on a terminal. A fill
    that fails, loses its lock or is stopped still prints what it committed."""
    from kpictl.cli import running
    from kpictl.errors import UsageError
    from kpictl.services.history.fill import FillRun, fill_with_job
    from kpictl.services.history.tenants import resolve_tenant

    def show_partial(partial: Any) -> None:
        if isinstance(partial, FillRun) and partial.outcomes and format != Format.json:
            _show_fill(partial, format, single=tenant is not None)

    engine = _open(settings)
    with engine.connect() as conn:
        tenant = resolve_tenant(conn, argument, unknown=UsageError) if argument else None
    metadata = running.job_metadata(settings)
    with running.long_job(settings, show_partial) as (stop, progress):
        return fill_with_job(
            engine, options, metadata=metadata, tenant=tenant, progress=progress, stop=stop
        )


def _show_fill(run: Any, format: Format, *, single: bool) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import history as render

    if format == Format.json:
        output.emit_success(run.result)
    elif single:
        output.emit_table(render.FILL_SINGLE_COLUMNS, render.fill_single_rows(run.outcomes[0]))
    else:
        output.emit_table(render.FILL_SUMMARY_COLUMNS, render.fill_summary_rows(run.result))
        if run.result["errors"]:
            output.echo()
            output.emit_table(render.FILL_ERROR_COLUMNS, render.fill_error_rows(run.result))


# --- history export ------------------------------------------------------------------------


def _export_format(format: Format | None, *, all_rows: bool, to_stdout: bool) -> Format:
    """The format asked for, else table on a terminal and csv otherwise; never table with
    --all (a table is held in memory)."""
    from kpictl.cli.output import stdout_is_terminal
    from kpictl.errors import UsageError

    if format is None:
        format = Format.table if stdout_is_terminal() and to_stdout else Format.csv
    if all_rows and format == Format.table:
        raise UsageError("invalid value for --format: table cannot be combined with --all")
    return format


def _export(
    settings: Settings, argument: Any, query: Any, format: Format, output_path: Path | None
) -> None:
    """Resolve the tenant, then stream its rows to stdout or atomically to `output_path`."""
    from kpictl.cli import output
    from kpictl.services.history import export, grants
    from kpictl.services.history.tenants import resolve_tenant

    with _open(settings).begin() as conn:
        tenant = resolve_tenant(conn, argument)
        grants.check_can_read(conn, tenant)
        write = _writer(conn, tenant, query, format, to_stdout=output_path is None)
        if output_path is not None:
            export.write_atomically(output_path, write)
            return
        # caught here, inside the transaction, so that it still ends normally
        with output.tolerate_closed_pipe():
            write(sys.stdout)


def _writer(
    conn: Any, tenant: Any, query: Any, format: Format, *, to_stdout: bool
) -> Callable[[TextIO], int]:
    """What writes the rows in `format` to a stream: PostgreSQL's COPY for csv; the JSON
    writer; a table (with the tenant as title, rich on a terminal, when it is stdout)."""
    from kpictl.cli import output
    from kpictl.cli.render import history as render
    from kpictl.services.history import export

    if format == Format.csv:
        return lambda out: export.copy_csv(conn, tenant, query, out)
    rows = export.stream_history(conn, tenant, query)
    if format in (Format.json, Format.ndjson):
        write = render.write_json if format == Format.json else render.write_ndjson
        return lambda out: write(tenant, rows, out)

    def write_table(out: TextIO) -> int:
        table_rows = render.table_rows(rows)
        where: dict[str, Any] = {"title": tenant.slug} if to_stdout else {"stream": out}
        output.emit_table(list(export.COLUMNS), table_rows, **where)
        return len(table_rows)

    return write_table


# --- history grant / revoke ----------------------------------------------------------------


def _grant_arguments(tenant_values: list[str], role: str) -> tuple[list[Any], str]:
    from kpictl.errors import UsageError
    from kpictl.services.history.grants import parse_role_argument
    from kpictl.services.history.tenants import parse_tenant_argument

    if not tenant_values:
        raise UsageError("missing option --tenant: name at least one tenant (UUID or slug)")
    return [parse_tenant_argument(value) for value in tenant_values], parse_role_argument(role)


def _warn_about_role(role: Any, name: str) -> None:
    """A role that reads more than its grants, or nothing yet: say so (stderr)."""
    if role.bypasses_rls:
        log.warning("role %s is a superuser or has BYPASSRLS: it reads every tenant", name)
    elif role.service:
        log.warning(
            "role %s holds INSERT on kpi_history: as a service role it reads any tenant "
            "through app.tenant anyway",
            name,
        )
    if not role.can_select:
        log.warning(
            "role %s cannot read the tables yet: GRANT SELECT ON tenants, kpi_history TO %s",
            name,
            name,
        )


def _open(settings: Settings) -> "Engine":
    from kpictl.cli.database import open_database

    return open_database(settings).engine
