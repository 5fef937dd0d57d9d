"""`kpictl freshness`: age of the newest snapshot of each KPI, as a monitoring check."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kpictl.cli import complete
from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    ErrorAfterOption,
    Format,
    FreshnessLevelOption,
    MonitoringFormat,
    MonitoringFormatOption,
    OutputFileOption,
    WarnAfterOption,
    duration_seconds,
    output_file,
)
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.kpis import KpiDefinition
    from kpictl.services.reports.freshness import FreshnessReport

app = typer.Typer()

KpiNamesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--kpi",
        help="Only this KPI (repeatable). Default: all KPIs of the level.",
        metavar="NAME",
        autocompletion=complete.kpi_names,
    ),
]


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

    kpictl freshness --format prometheus --output $TEXTFILE_DIR/kpictl.prom

--output writes the json, nagios or prometheus text to FILE atomically (a temporary file in the
same directory, then a rename): node_exporter's textfile collector never reads half a file.
"""


@kpictl_command(app, "freshness", help=HELP)
def freshness(
    settings: Settings,
    kpi: KpiNamesOption = None,
    level: FreshnessLevelOption = None,
    warn_after: WarnAfterOption = None,
    error_after: ErrorAfterOption = None,
    format: MonitoringFormatOption = MonitoringFormat.table,
    output_path: OutputFileOption = None,
) -> int:
    from kpictl.cli.render.freshness import exit_code
    from kpictl.errors import SchemaNotReady, UsageError
    from kpictl.services.reports import freshness as service

    target = _output_target(output_path, format)
    chosen_level, kpis = service.select_kpis(kpi or [], level.value if level else None)
    warn, error = thresholds(settings, warn_after, error_after)
    per_kpi = per_kpi_thresholds(settings, warn_after, error_after, kpis)
    try:
        report = _check(settings, kpis, chosen_level, (warn, error), per_kpi)
    except (SchemaNotReady, UsageError):  # not migrated ...: 1; no database configured: 2
        raise
    except Exception as exc:  # could not check: exit 3, whatever broke (Nagios UNKNOWN)
        return _could_not_check(settings, exc, format, target)
    _show(report, format, target)
    return exit_code(report)


def thresholds(
    settings: Settings, warn_flag: str | None, error_flag: str | None, kpi: str | None = None
) -> tuple[float, float]:
    """(warn, error) in seconds, each from its flag, variable, config file or default; with
    `kpi`, that KPI's own from the config file where neither flag nor variable is set."""
    from kpictl.config import kpi_threshold
    from kpictl.services.reports.freshness import check_thresholds

    chosen = [
        settings.setting("freshness.warn_after", warn_flag),
        settings.setting("freshness.error_after", error_flag),
    ]
    if kpi is not None:
        chosen = [kpi_threshold(settings.config, each, kpi) for each in chosen]
    warn, error = (duration_seconds(str(each.value), each.name) for each in chosen)
    check_thresholds(warn, error, kpi)
    return warn, error


def per_kpi_thresholds(
    settings: Settings, warn_flag: str | None, error_flag: str | None, kpis: "list[KpiDefinition]"
) -> dict[str, tuple[float, float]]:
    """The thresholds of the KPIs the config file names in [freshness.kpis.NAME]."""
    named = [kpi.name for kpi in kpis if kpi.name in settings.config.freshness_per_kpi]
    return {name: thresholds(settings, warn_flag, error_flag, name) for name in named}


def _output_target(path: Path | None, format: Format) -> Path | None:
    """--output, checked: only for the json, nagios and prometheus text."""
    from kpictl.errors import UsageError

    if path is not None and format == Format.table:
        raise UsageError("--output writes json, nagios or prometheus: add --format")
    return output_file(path)


def _check(
    settings: Settings,
    kpis: "list[KpiDefinition]",
    level: str,
    thresholds: tuple[float, float],
    per_kpi: dict[str, tuple[float, float]],
) -> "FreshnessReport":
    from kpictl.cli.database import open_database
    from kpictl.services.reports.freshness import check_freshness

    warn, error = thresholds
    with open_database(settings).engine.connect() as connection:
        return check_freshness(
            connection,
            kpis,
            level=level,
            warn_after_seconds=warn,
            error_after_seconds=error,
            per_kpi=per_kpi,
        )


def _show(report: Any, format: Format, target: Path | None) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import freshness as render

    if format != Format.table:
        output.emit_text(render.monitoring_text(report, format.value), target)
        return
    output.emit_table(
        render.TABLE_COLUMNS, render.table_rows(report), title=render.table_title(report)
    )


def _could_not_check(
    settings: Settings,
    exc: Exception,
    format: Format,
    target: Path | None,
) -> int:
    """Say why the check could not run, on stderr and in the chosen format (the table has
    nothing to show); exit 3."""
    from kpictl.cli.render import freshness as render

    text = render.unknown_text(_reason(settings, exc), format.value)
    if text:
        from kpictl.cli import output

        output.emit_text(text, target)
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
