"""`kpictl kpis`: the latest value of each KPI with its period, unit and version."""

import logging
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kpictl.cli import complete
from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    Format,
    KpiLevelOption,
    KpisFormat,
    KpisFormatOption,
    OutputFileOption,
    SinceDateOption,
    output_file,
)
from kpictl.errors import UsageError
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.reports.latest import KpiValue

app = typer.Typer()
log = logging.getLogger(__name__)

TrendOption = Annotated[
    str | None,
    typer.Option(
        "--trend",
        help="Draw this KPI over time (since --since) instead of the table.",
        metavar="KPI",
        autocompletion=complete.kpi_names,
    ),
]
ProductOption = Annotated[
    str | None,
    typer.Option("--product", help="Only this product (owner/name).", metavar="OWNER/NAME"),
]


HELP = """Latest value of each KPI, with period and unit.

Per KPI (and product) the snapshot with the newest period end, with its period (UTC), unit and
version.

"no data" means the KPI had nothing to measure in its period (value NULL); "never computed" means
no snapshot of that factory KPI exists yet (run `kpictl aggregate`). Default level: factory, or
product with --product.

Examples:

    kpictl kpis

    kpictl kpis --level product

    kpictl kpis --product acme/app --format json

    kpictl kpis --format csv > kpis.csv

    kpictl kpis --trend mtti --since 2026-01-01

    kpictl kpis --trend product_success_rate --product acme/app

    kpictl kpis --format prometheus --output $TEXTFILE_DIR/kpis.prom

--format prometheus: every KPI of both levels (or of --level), one gauge family per KPI with
level and scope (the product) labels, the end of each value's period, and the jobs' health
(last success, last duration, failures). --output writes it atomically (a temporary file, then
a rename) for node_exporter's textfile collector.
"""


@kpictl_command(app, "kpis", help=HELP)
def kpis(
    settings: Settings,
    level: KpiLevelOption = None,
    product: ProductOption = None,
    format: KpisFormatOption = KpisFormat.table,
    output_path: OutputFileOption = None,
    trend: TrendOption = None,
    since: SinceDateOption = None,
) -> None:
    from kpictl.services.reports import latest as service

    if trend is not None:
        return _trend(settings, trend, product, since, format)
    target = _output_target(output_path, format)
    if format == Format.prometheus:
        return _prometheus(settings, level.value if level else None, product, target)
    chosen = service.resolve_level(level.value if level else None, product)
    owner_name = service.parse_product(product) if product is not None else None
    values, trends = _latest_values(settings, chosen, owner_name, trends=format == Format.table)
    _show(values, chosen, format, trends)
    if not values:
        _nothing_yet(chosen, product)


def _nothing_yet(level: str, product: str | None) -> None:
    scope = f" for {product}" if product else ""
    log.warning("no %s-level snapshots%s yet; run `kpictl aggregate`", level, scope)


def _latest_values(
    settings: Settings, level: str, owner_name: tuple[str, str] | None, *, trends: bool
) -> "tuple[list[KpiValue], dict[Any, Any] | None]":
    """The latest value of each KPI at `level`, of one product (owner, name) when given; with
    `trends`, also the values of the same windows before (`services/reports/trends.py`)."""
    from kpictl.cli.database import open_database
    from kpictl.services.reports import latest as service
    from kpictl.services.reports.trends import trends as trends_of

    with open_database(settings).engine.connect() as connection:
        scope_ids = service.product_ids(connection, *owner_name) if owner_name else None
        values = service.latest_values(connection, level=level, scope_ids=scope_ids)
        return values, (trends_of(connection, values) if trends else None)


def _show(
    values: "list[KpiValue]", level: str, format: Format, trends: "dict[Any, Any] | None"
) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import kpis as render

    if format == Format.json:
        output.emit_json(render.as_document(values))
    elif format in (Format.csv, Format.ndjson):
        output.emit_rows(format.value, render.COLUMNS, render.csv_rows(values))
    else:
        columns, rows = render.table(values, level, trends)
        title = f"{level} KPIs (latest)"
        output.emit_table(columns, rows, title=title, optional=render.OPTIONAL)


def _output_target(path: Path | None, format: Format) -> Path | None:
    from kpictl.errors import UsageError

    if path is not None and format != Format.prometheus:
        raise UsageError("--output writes the prometheus text: add --format prometheus")
    return output_file(path)


def _prometheus(
    settings: Settings, level: str | None, product: str | None, target: Path | None
) -> None:
    """Both levels (or `level`), of every product (or `product`), and the jobs' health."""
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.render import kpi_metrics
    from kpictl.services.reports import job_health, latest

    owner_name = latest.parse_product(product) if product is not None else None
    with open_database(settings).engine.connect() as connection:
        scope_ids = latest.product_ids(connection, *owner_name) if owner_name else None
        levels = [level] if level else (["product"] if product else ["factory", "product"])
        values = [
            value
            for each in levels
            for value in latest.latest_values(connection, level=each, scope_ids=scope_ids)
        ]
        health = job_health.job_health(connection)
    output.emit_text(kpi_metrics.render(values, health), target)


TREND_DAYS = 30  # --trend without --since


def _trend(
    settings: Settings, kpi: str, product: str | None, since: str | None, format: Format
) -> None:
    """One KPI over time: a line chart as wide as the terminal (80 columns in a pipe), or its
    points in JSON / CSV / NDJSON."""
    from kpictl.cli import output
    from kpictl.cli.render import kpis as render

    width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80
    points = TREND_POINTS_MAX if format != Format.table else max(width - TREND_AXIS, 10)
    series, definition = _trend_series(settings, kpi, product, _trend_start(since), points)
    if format in (Format.json, Format.csv, Format.ndjson):
        output.emit_rows(format.value, render.TREND_COLUMNS, render.trend_rows(series))
    elif format == Format.table:
        output.echo_lines(render.trend_lines(series, definition, product, width))
    else:
        raise UsageError(f"--trend draws a chart or lists its points, not {format.value}")


def _trend_start(since: str | None) -> datetime:
    from kpictl.cli.options import calendar_date

    day = calendar_date(since, "--since")
    if day is None:
        return datetime.now(UTC) - timedelta(days=TREND_DAYS)
    return datetime.combine(day, datetime.min.time(), UTC)


def _trend_kpi(kpi: str, product: str | None) -> Any:
    """The definition of a factory or product KPI, with --product exactly for the latter."""
    from kpictl import kpis as registry

    definition = registry.BY_NAME.get(kpi)
    if definition is None or definition.level == "run":
        raise UsageError(f"invalid value for --trend: {kpi!r} is not a factory or product KPI")
    if (definition.level == "product") != (product is not None):
        need = "give --product owner/name" if product is None else "leave out --product"
        raise UsageError(f"--trend {kpi} is a {definition.level}-level KPI: {need}")
    return definition


def _trend_series(
    settings: Settings, kpi: str, product: str | None, start: datetime, points: int
) -> "tuple[list[Any], Any]":
    from kpictl.cli.database import open_database
    from kpictl.services.reports import latest, trends

    definition = _trend_kpi(kpi, product)
    with open_database(settings).engine.connect() as connection:
        owner_name = latest.parse_product(product) if product else None
        scope = latest.product_ids(connection, *owner_name) if owner_name else [None]
        series = trends.history(
            connection, kpi, level=definition.level, scope_id=scope[0], since=start, points=points
        )
    return series, definition


TREND_POINTS_MAX = 1000  # JSON/CSV: more points than this are averaged in groups
TREND_AXIS = 14  # a chart's y-axis labels: one point per remaining column
