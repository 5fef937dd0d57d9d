"""`kpictl freshness`: age of the newest snapshot of each KPI, as a monitoring check."""

from enum import Enum
from typing import Annotated, Any

import typer

from kpictl.cli.options import kpictl_command
from kpictl.settings import Settings

app = typer.Typer()


class FreshnessFormat(str, Enum):
    table = "table"
    json = "json"
    prometheus = "prometheus"
    nagios = "nagios"


class FreshnessLevel(str, Enum):
    factory = "factory"
    product = "product"
    run = "run"


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
    kpi: Annotated[
        list[str] | None,
        typer.Option(
            "--kpi",
            help="Only this KPI (repeatable). Default: all KPIs of the level.",
            metavar="NAME",
        ),
    ] = None,
    level: Annotated[
        FreshnessLevel | None,
        typer.Option(
            "--level",
            help="Level of the snapshots to check. Default: factory, or the level of --kpi.",
            show_default=False,
        ),
    ] = None,
    warn_after: Annotated[
        str, typer.Option("--warn-after", help="Stale above this age.", metavar="DUR")
    ] = "300",
    error_after: Annotated[
        str, typer.Option("--error-after", help="Expired above this age.", metavar="DUR")
    ] = "900",
    format: Annotated[
        FreshnessFormat, typer.Option("--format", help="Output format.")
    ] = FreshnessFormat.table,
) -> int:
    from kpictl.services.reports import freshness as service

    warn = service.parse_threshold_seconds(warn_after, "--warn-after")
    error = service.parse_threshold_seconds(error_after, "--error-after")
    service.check_thresholds(warn, error)
    chosen_level, kpis = service.select_kpis(kpi or [], level.value if level else None)
    from kpictl.errors import SchemaNotReady

    try:
        from kpictl.cli.database import open_database

        with open_database(settings).engine.connect() as connection:
            report = service.check_freshness(
                connection,
                kpis,
                level=chosen_level,
                warn_after_seconds=warn,
                error_after_seconds=error,
            )
    except SchemaNotReady:  # not migrated, not adopted, ...: exit 1 like every command
        raise
    except Exception as exc:  # could not check: exit 3, whatever broke (Nagios UNKNOWN)
        return _could_not_check(settings, exc, format, chosen_level, warn, error)
    from kpictl.cli.render.freshness import exit_code

    _render(report, format)
    return exit_code(report)


def _render(report: Any, format: FreshnessFormat) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import freshness as render

    if format is FreshnessFormat.json:
        output.emit_json(render.report_document(report))
    elif format is FreshnessFormat.nagios:
        output.echo(render.render_nagios(report))
    elif format is FreshnessFormat.prometheus:
        output.echo(render.render_prometheus(report).rstrip("\n"))
    else:
        output.emit_table(
            render.TABLE_COLUMNS, render.table_rows(report), title=render.table_title(report)
        )


def _could_not_check(
    settings: Settings,
    exc: Exception,
    format: FreshnessFormat,
    level: str,
    warn: float,
    error: float,
) -> int:
    """Report why the check could not run, on stderr and in the chosen format; exit 3."""
    import logging
    import traceback

    from kpictl.cli import output
    from kpictl.cli.render import freshness as render
    from kpictl.errors import KpictlError, classify_database_error
    from kpictl.redact import redact, secrets_of_url

    classified = exc if isinstance(exc, KpictlError) else classify_database_error(exc)
    message = classified.message if classified else f"internal error: {type(exc).__name__}: {exc}"
    secrets = secrets_of_url(settings.target.url)
    message = redact(message, secrets)
    log = logging.getLogger(__name__)
    if settings.verbose:
        log.debug(redact("".join(traceback.format_exception(exc)), secrets))
    log.error("could not check freshness: %s", message)
    if format is FreshnessFormat.json:
        output.emit_json(render.error_document(message, level, warn, error))
    elif format is FreshnessFormat.nagios:
        output.echo(render.render_nagios_unknown(message))
    elif format is FreshnessFormat.prometheus:
        output.echo(render.render_prometheus(None).rstrip("\n"))
    return render.UNKNOWN_EXIT_CODE
