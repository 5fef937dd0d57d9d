"""`kpictl history fill` and `kpictl history export`: the per-tenant KPI history."""

from typing import Annotated

import typer

from kpictl.cli.commands import kpictl_command, new_app
from kpictl.cli.options import (
    MAX_CONCURRENCY,
    MAX_EXPORT_LIMIT,
    ConcurrencyOption,
    ExportFormat,
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

app = typer.Typer()
history_app = new_app(
    "history",
    help="The per-tenant KPI history: fill it from AVI reports and VLI audits, export it.\n\n"
    "Examples:\n\n"
    "    kpictl history fill\n\n"
    "    kpictl history export --tenant acme --format csv",
)
app.add_typer(history_app)

AllRowsFlag = Annotated[
    bool, typer.Option("--all", help="Every row in range, ignoring --limit (csv, json).")
]
GrainOption = Annotated[Grain, typer.Option("--grain", help="Row per week, month or quarter.")]
RoleOption = Annotated[
    str, typer.Option("--role", help="An existing database role.", show_default=False)
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
    format: TextFormatOption = TextFormat.text,
) -> int:
    from kpictl.cli.options import date_range, whole_number
    from kpictl.errors import UsageError
    from kpictl.services.history.fill import FillOptions
    from kpictl.services.history.tenants import parse_tenant_argument

    workers = whole_number(concurrency, "--concurrency", within=(1, MAX_CONCURRENCY))
    argument = parse_tenant_argument(tenant) if tenant is not None else None
    since_date, until_date = date_range(since, until)
    if until_date is not None and since_date is None:
        raise UsageError(f"invalid value for --until: {until} needs --since (a backfill range)")
    options = FillOptions(
        since=since_date,
        until=until_date,
        concurrency=workers,
    )
    from kpictl.cli.render.history import fill_exit_code

    run = _fill_with_job(settings, options, argument, format.value)
    _render_fill(run, format.value, single=argument is not None)
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
    from kpictl.cli.output import stdout_is_terminal
    from kpictl.errors import UsageError
    from kpictl.services.history.export import ExportQuery
    from kpictl.services.history.tenants import parse_tenant_argument

    count = whole_number(limit, "--limit", within=(1, MAX_EXPORT_LIMIT))
    argument = parse_tenant_argument(tenant)
    since_date, until_date = date_range(since, until)
    if format is None:
        format = (
            ExportFormat.table if stdout_is_terminal() and output_path is None else ExportFormat.csv
        )
    if all_rows and format == Format.table:
        raise UsageError("invalid value for --format: table cannot be combined with --all")
    output_file(output_path)
    query = ExportQuery(
        limit=None if all_rows else count, since=since_date, until=until_date, grain=grain.value
    )
    _export(settings, argument, query, format.value, output_path)
    return 0


@kpictl_command(
    history_app,
    "grant",
    help="Let a database role read these tenants' history rows, and only theirs: the row-level "
    "security policy decides by the connected role, so no SET can widen it (docs/SECURITY.md). "
    "Run as the owner of kpictl's tables. Granting again changes nothing.\n\n"
    "Examples:\n\n"
    "    kpictl history grant --tenant acme --role kpi_dashboard\n\n"
    "    kpictl history grant --tenant acme --tenant globex --role grafana_acme",
)
def grant(settings: Settings, tenant: TenantsOption, role: RoleOption) -> int:
    import logging

    from kpictl.cli import output
    from kpictl.services.history import grants

    arguments, role_name = _grant_arguments(tenant, role)
    with _open(settings).begin() as conn:
        granted_role, changes = grants.grant(conn, arguments, role_name)
    for change in changes:
        verb = "granted" if change.changed else "already granted"
        output.echo(f"{verb}: role {role_name} reads tenant {_shown_tenant(change.tenant)}")
    log = logging.getLogger(__name__)
    if granted_role.bypasses_rls:
        log.warning("role %s is a superuser or has BYPASSRLS: it reads every tenant", role_name)
    elif granted_role.service:
        log.warning(
            "role %s holds INSERT on kpi_history: as a service role it reads any tenant "
            "through app.tenant anyway",
            role_name,
        )
    if not granted_role.can_select:
        log.warning(
            "role %s cannot read the tables yet: GRANT SELECT ON tenants, kpi_history TO %s",
            role_name,
            role_name,
        )
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
    from kpictl.services.history import grants

    arguments, role_name = _grant_arguments(tenant, role)
    with _open(settings).begin() as conn:
        changes = grants.revoke(conn, arguments, role_name)
    for change in changes:
        shown_tenant = _shown_tenant(change.tenant)
        if change.changed:
            output.echo(f"revoked: role {role_name} no longer reads tenant {shown_tenant}")
        else:
            output.echo(f"not granted: role {role_name} had no grant of tenant {shown_tenant}")
    return 0


# --- helpers of the commands (heavy imports inside) ----------------------------------------


def _grant_arguments(tenant_values: list[str], role: str):
    from kpictl.errors import UsageError
    from kpictl.services.history.grants import parse_role_argument
    from kpictl.services.history.tenants import parse_tenant_argument

    if not tenant_values:
        raise UsageError("missing option --tenant: name at least one tenant (UUID or slug)")
    return [parse_tenant_argument(value) for value in tenant_values], parse_role_argument(role)


def _open(settings: Settings):
    from kpictl.cli.database import open_database

    return open_database(settings).engine


def _shown_tenant(tenant) -> str:
    return f"{tenant.slug} ({tenant.id})"


def _fill_with_job(settings: Settings, options, argument, fmt: str):
    """Run the fill as one `history_fill` job row, with a progress bar on a terminal. A fill
    that fails, loses its lock or is stopped still prints what it committed."""
    from kpictl.cli.database import open_database
    from kpictl.cli.progress import progress_bar
    from kpictl.cli.signals import graceful_stop
    from kpictl.errors import KpictlError, UsageError
    from kpictl.redact import secrets_of_url
    from kpictl.services.history.fill import FillRun, fill_with_job
    from kpictl.services.history.tenants import resolve_tenant
    from kpictl.services.jobs import rows as jobs

    engine = open_database(settings).engine
    with engine.connect() as conn:
        tenant = resolve_tenant(conn, argument, unknown=UsageError) if argument else None
    metadata = jobs.job_metadata(settings.argv, secrets_of_url(settings.target.url))
    try:
        with (
            graceful_stop(settings.stop_grace_seconds) as stop,
            progress_bar(settings.quiet) as progress,
        ):
            return fill_with_job(
                engine, options, metadata=metadata, tenant=tenant, progress=progress, stop=stop
            )
    except KpictlError as exc:
        if isinstance(exc.partial, FillRun) and exc.partial.outcomes:
            _render_fill(exc.partial, fmt, single=tenant is not None)
        raise


def _render_fill(run, fmt: str, *, single: bool) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import history as render

    if fmt == "json":
        output.emit_json(run.result)
        return
    if single:
        output.emit_table(render.FILL_SINGLE_COLUMNS, render.fill_single_rows(run.outcomes[0]))
        return
    output.emit_table(render.FILL_SUMMARY_COLUMNS, render.fill_summary_rows(run.result))
    if run.result["errors"]:
        output.echo()
        output.emit_table(render.FILL_ERROR_COLUMNS, render.fill_error_rows(run.result))


def _check_access(conn, tenant) -> None:
    """A role that may not read the tenant would get an empty history: say so instead (77)."""
    from kpictl.errors import PermissionDenied
    from kpictl.services.history.grants import can_read

    if not can_read(conn, tenant):
        role = conn.exec_driver_sql("SELECT current_user").scalar()
        raise PermissionDenied(
            f"role {role} may not read tenant {tenant.slug}'s history: it has no grant of it "
            "and is not a kpictl service role",
            hint=f"as the owner of kpictl's tables: kpictl history grant --tenant {tenant.slug} "
            f"--role {role}",
        )


def _export(settings: Settings, argument, query, fmt: str, output_path) -> None:
    """Resolve the tenant, then stream its rows to stdout or atomically to `output_path`."""
    import sys

    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.render import history as render
    from kpictl.services.history import export
    from kpictl.services.history.tenants import resolve_tenant

    engine = open_database(settings).engine
    with engine.begin() as conn:
        tenant = resolve_tenant(conn, argument)
        _check_access(conn, tenant)
        rows = export.stream_history(conn, tenant, query)
        if fmt == "table" and output_path is None:
            output.emit_table(list(export.COLUMNS), render.table_rows(rows), title=tenant.slug)
            return
        if fmt == "csv":

            def write(out):
                return export.copy_csv(conn, tenant, query, out)
        elif fmt == "json":

            def write(out):
                return render.write_json(tenant, rows, out)
        else:

            def write(out):
                output.emit_table(list(export.COLUMNS), render.table_rows(rows), stream=out)
                return 0

        if output_path is None:
            # caught here, inside the transaction, so that it still ends normally
            with output.tolerate_closed_pipe():
                write(sys.stdout)
        else:
            export.write_atomically(output_path, write)
