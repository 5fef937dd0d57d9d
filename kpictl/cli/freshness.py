"""`kpictl freshness`: age of the newest snapshot of each KPI, as a monitoring check."""

from typing import Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    ERROR_AFTER_SECONDS,
    WARN_AFTER_SECONDS,
    ErrorAfterOption,
    Format,
    FreshnessLevelOption,
    MonitoringFormat,
    MonitoringFormatOption,
    WarnAfterOption,
    duration_seconds,
)
from kpictl.settings import Settings

app = typer.Typer()

KpiNamesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--kpi",
        help="Only this KPI (repeatable). Default: all KPIs of the level.",
        metavar="NAME",
    ),
]


HELP = """Check how recently each KPI was calculated.

Per KPI, the seconds since its newest snapshot was calculated, with a verdict.

Status: fresh (age <= --warn-after), stale (<= --error-after), expired (older), missing (never
computed). Exit 0 all fresh, 1 any stale, 2 any expired or missing (or a bad option), 3 the check
could not run (database unreachable, query failed): the Nagios/Icinga plugin convention.

DUR is seconds, or a number with s, m, h or d (90s, 10m, 2h, 1d).

Examples:

    kpictl freshness

    kpictl freshness --kpi mtti --warn-after 10m --error-after 30m

    kpictl freshness --level product --format json

    kpictl freshness --format nagios          # one status line with perfdata

    kpictl freshness --format prometheus > /var/lib/node_exporter/textfile/kpictl.prom
"""


@kpictl_command(app, "freshness", help=HELP)
def freshness(
    settings: Settings,
    kpi: KpiNamesOption = None,
    level: FreshnessLevelOption = None,
    warn_after: WarnAfterOption = str(WARN_AFTER_SECONDS),
    error_after: ErrorAfterOption = str(ERROR_AFTER_SECONDS),
    format: MonitoringFormatOption = MonitoringFormat.table,
) -> int:
    from kpictl.cli.render.freshness import exit_code
    from kpictl.errors import SchemaNotReady
    from kpictl.services.reports import freshness as service

    warn = duration_seconds(warn_after, "--warn-after")
    error = duration_seconds(error_after, "--error-after")
    service.check_thresholds(warn, error)
    chosen_level, kpis = service.select_kpis(kpi or [], level.value if level else None)
    try:
        report = _check(settings, kpis, chosen_level, warn, error)
    except SchemaNotReady:  # not migrated, not adopted, ...: exit 1 like every command
        raise
    except Exception as exc:  # could not check: exit 3, whatever broke (Nagios UNKNOWN)
        return _could_not_check(settings, exc, format, (chosen_level, warn, error))
    _show(report, format)
    return exit_code(report)


def _check(settings: Settings, kpis: list, level: str, warn: float, error: float) -> Any:
    from kpictl.cli.database import open_database
    from kpictl.services.reports.freshness import check_freshness

    with open_database(settings).engine.connect() as connection:
        return check_freshness(
            connection, kpis, level=level, warn_after_seconds=warn, error_after_seconds=error
        )


def _show(report: Any, format: Format) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import freshness as render

    if format == Format.json:
        output.emit_json(render.report_document(report))
    elif format == Format.nagios:
        output.echo(render.render_nagios(report))
    elif format == Format.prometheus:
        output.echo(render.render_prometheus(report).rstrip("\n"))
    else:
        output.emit_table(
            render.TABLE_COLUMNS, render.table_rows(report), title=render.table_title(report)
        )


def _could_not_check(
    settings: Settings, exc: Exception, format: Format, asked: tuple[str, float, float]
) -> int:
    """Say why the check could not run, on stderr and in the chosen format (the table has
    nothing to show); exit 3. `asked`: the level and the two thresholds."""
    from kpictl.cli import output
    from kpictl.cli.render import freshness as render

    message = _reason(settings, exc)
    if format == Format.json:
        output.emit_json(render.error_document(message, *asked))
    elif format == Format.nagios:
        output.echo(render.render_nagios_unknown(message))
    elif format == Format.prometheus:
        output.echo(render.render_prometheus(None).rstrip("\n"))
    return render.UNKNOWN_EXIT_CODE


def _reason(settings: Settings, exc: Exception) -> str:
    """The error's message for an operator, password-free, logged on stderr (with the
    traceback under -v)."""
    import logging
    import traceback

    from kpictl.errors import as_kpictl_error
    from kpictl.redact import redact, secrets_of_url

    known = as_kpictl_error(exc)
    message = known.message if known else f"internal error: {type(exc).__name__}: {exc}"
    secrets = secrets_of_url(settings.target.url)
    log = logging.getLogger(__name__)
    if settings.verbose:
        log.debug(redact("".join(traceback.format_exception(exc)), secrets))
    log.error("could not check freshness: %s", redact(message, secrets))
    return redact(message, secrets)
