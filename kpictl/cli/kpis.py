"""`kpictl kpis`: the latest value of each KPI with its period, unit and version."""

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, KpiLevelOption, TableFormat, TableFormatOption
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
"""


@kpictl_command(app, "kpis", help=HELP)
def kpis(
    settings: Settings,
    level: KpiLevelOption = None,
    product: ProductOption = None,
    format: TableFormatOption = TableFormat.table,
) -> None:
    from kpictl.services.reports import latest as service

    chosen = service.resolve_level(level.value if level else None, product)
    owner_name = service.parse_product(product) if product is not None else None
    values = _latest_values(settings, chosen, owner_name)
    _show(values, chosen, format)
    if not values:
        log.warning(
            "no %s-level snapshots%s yet; run `kpictl aggregate`",
            chosen,
            f" for {product}" if product else "",
        )


def _latest_values(
    settings: Settings, level: str, owner_name: tuple[str, str] | None
) -> "list[KpiValue]":
    """The latest value of each KPI at `level`, of one product (owner, name) when given."""
    from kpictl.cli.database import open_database
    from kpictl.services.reports import latest as service

    with open_database(settings).engine.connect() as connection:
        scope_ids = service.product_ids(connection, *owner_name) if owner_name else None
        return service.latest_values(connection, level=level, scope_ids=scope_ids)


def _show(values: "list[KpiValue]", level: str, format: Format) -> None:
    from kpictl.cli import output
    from kpictl.cli.render import kpis as render

    if format == Format.json:
        output.emit_json(render.as_document(values))
    elif format in (Format.csv, Format.ndjson):
        output.emit_rows(format.value, render.COLUMNS, render.csv_rows(values))
    else:
        columns, rows = render.table(values, level)
        output.emit_table(columns, rows, title=f"{level} KPIs (latest)")
