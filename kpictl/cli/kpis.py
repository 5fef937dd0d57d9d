"""`kpictl kpis`: the latest value of each KPI with its period, unit and version."""

from typing import Annotated

import typer

from kpictl.cli.commands import kpictl_command
from kpictl.cli.options import Format, KpiLevelOption, TableFormat, TableFormatOption
from kpictl.settings import Settings

app = typer.Typer()

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
    from kpictl.cli import output
    from kpictl.cli.database import open_database
    from kpictl.cli.render import kpis as render
    from kpictl.services.reports import latest as service

    chosen = service.resolve_level(level.value if level else None, product)
    owner_name = service.parse_product(product) if product is not None else None
    with open_database(settings).engine.connect() as connection:
        scope_ids = service.product_ids(connection, *owner_name) if owner_name else None
        values = service.latest_values(connection, level=chosen, scope_ids=scope_ids)
    if format == Format.json:
        output.emit_json(render.as_document(values))
    elif format == Format.csv:
        output.emit_csv(render.COLUMNS, render.csv_rows(values))
    else:
        columns, rows = render.table(values, chosen)
        output.emit_table(columns, rows, title=f"{chosen} KPIs (latest)")
    if not values:
        import logging

        logging.getLogger(__name__).warning(
            "no %s-level snapshots%s yet; run `kpictl aggregate`",
            chosen,
            f" for {product}" if product else "",
        )
