"""`kpictl freshness`: age of the newest snapshot of each KPI, as a monitoring check."""

from enum import Enum
from pathlib import Path
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
could not run (database unreachable, query failed): the Nagios/Icinga plugin convention. With
--format nagios a bad option or setting is UNKNOWN too: exit 3 and a status line. -w and -c are
the plugins' usual names of --warn-after and --error-after.

DUR is seconds, or a number with s, m, h or d (90s, 10m, 2h, 1d).

Examples:

    kpictl freshness

    kpictl freshness --kpi mtti --warn-after 10m --error-after 30m

    kpictl freshness --level product --format json

    kpictl freshness --format nagios          # one status line with perfdata

    kpictl freshness --format prometheus --output /var/lib/prometheus/node-exporter/kpictl.prom

--output writes the json, nagios or prometheus text to FILE atomically (a temporary file in the
same directory, then a rename): node_exporter's textfile collector never reads half a file.
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
        str, typer.Option("--warn-after", "-w", help="Stale above this age.", metavar="DUR")
    ] = "300",
    error_after: Annotated[
        str,
        typer.Option("--error-after", "-c", help="Expired above this age.", metavar="DUR"),
    ] = "900",
    format: Annotated[
        FreshnessFormat, typer.Option("--format", help="Output format.")
    ] = FreshnessFormat.table,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Write the json, nagios or prometheus output to FILE atomically "
            "(replaced by a rename), not to stdout.",
            metavar="FILE",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> int:
    from kpictl.services.reports import freshness as service

    if output_file is not None and format is FreshnessFormat.table:
        from kpictl.errors import UsageError

        raise UsageError("--output writes json, nagios or prometheus: add --format")
    warn = service.parse_threshold_seconds(warn_after, "--warn-after")
    error = service.parse_threshold_seconds(error_after, "--error-after")
    service.check_thresholds(warn, error)
    chosen_level, kpis = service.select_kpis(kpi or [], level.value if level else None)
    from kpictl.errors import SchemaNotReady, UsageError

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
    except (SchemaNotReady, UsageError):  # not migrated ...: 1; no database configured: 2
        raise
    except Exception as exc:  # could not check: exit 3, whatever broke (Nagios UNKNOWN)
        return _could_not_check(settings, exc, format, chosen_level, warn, error, output_file)
    from kpictl.cli.render.freshness import exit_code

    _render(report, format, output_file)
    return exit_code(report)


def _emit(text: str, output_file: Path | None) -> None:
    """`text` (one or more lines) to stdout, or atomically to `output_file`."""
    from kpictl.cli import output

    if output_file is None:
        output.echo(text.rstrip("\n"))
        return
    from kpictl.services.history.export import write_atomically

    write_atomically(output_file, lambda out: out.write(text.rstrip("\n") + "\n"))


def _render(report: Any, format: FreshnessFormat, output_file: Path | None = None) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import freshness as render

    if format is FreshnessFormat.json:
        _emit(output.json_text(render.report_document(report)), output_file)
    elif format is FreshnessFormat.nagios:
        _emit(render.render_nagios(report), output_file)
    elif format is FreshnessFormat.prometheus:
        _emit(render.render_prometheus(report), output_file)
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
    output_file: Path | None = None,
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
        _emit(output.json_text(render.error_document(message, level, warn, error)), output_file)
    elif format is FreshnessFormat.nagios:
        _emit(render.render_nagios_unknown(message), output_file)
    elif format is FreshnessFormat.prometheus:
        _emit(render.render_prometheus(None), output_file)
    return render.UNKNOWN_EXIT_CODE
