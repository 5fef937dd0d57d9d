"""`kpictl kpis`: the latest value of each KPI with its period, unit and version."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import (
    Format,
    KpiLevelOption,
    KpisFormat,
    KpisFormatOption,
    OutputFileOption,
    output_file,
)
from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.reports.latest import KpiValue

app = typer.Typer()
log = logging.getLogger(__name__)

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
) -> None:
    from kpictl.services.reports import latest as service

    target = _output_target(output_path, format)
    if format == Format.prometheus:
        return _prometheus(settings, level.value if level else None, product, target)
    chosen = service.resolve_level(level.value if level else None, product)
    owner_name = service.parse_product(product) if product is not None else None
    values, trends = _latest_values(settings, chosen, owner_name, trends=format == Format.table)
    _show(values, chosen, format, trends)
    if not values:
        log.warning(
            "no %s-level snapshots%s yet; run `kpictl aggregate`",
            chosen,
            f" for {product}" if product else "",
        )


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
