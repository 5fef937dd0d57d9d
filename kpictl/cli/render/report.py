"""`kpictl report` output: the HTML page, from the template `templates/report.html.j2`.

Jinja2 escapes every value put into the page (autoescape): repository names, tenant slugs and
job errors are untrusted text. The charts are inline SVG from `svg_charts.py`, marked safe
after pygal's XML serializer escaped their text. Values are formatted as `kpictl kpis` prints
them; sparklines and changes are those of its trend column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from kpictl import __version__
from kpictl import kpis as registry
from kpictl.services.history.export import METRICS
from kpictl.services.reports.latest import KpiValue
from kpictl.services.reports.report import Report

if TYPE_CHECKING:
    from jinja2 import Environment


@dataclass(frozen=True)
class FactoryCard:
    name: str
    unit: str
    value: str  # as `kpictl kpis` prints it
    change: str
    period: str
    chart: str  # inline SVG, or "" without points in range
    points: int
    window: str  # the length of the charted periods


@dataclass(frozen=True)
class ProductRow:
    product: str
    cells: list[tuple[str, str]]  # per product KPI: (value, sparkline and change)


def html(report: Report) -> str:
    """The whole page."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            version=__version__,
            factory=[_factory_card(report, value) for value in report.factory],
            product_kpis=registry.at_level("product"),
            products=product_rows(report),
            tenant_charts=_tenant_charts(report),
        )
    )


def _environment() -> Environment:
    """Jinja2 with the package's templates, escaping everything, and the page's filters."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from kpictl.cli.render.freshness import human_age

    environment = Environment(
        loader=PackageLoader("kpictl.cli.render", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["instant"] = instant
    environment.filters["human_age"] = human_age
    return environment


def instant(moment: datetime | None) -> str:
    """UTC, to the minute (to the second when it has seconds)."""
    from datetime import UTC

    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M") + " UTC"


def _factory_card(report: Report, latest: KpiValue) -> FactoryCard:
    """The latest value, its change as in `kpictl kpis`, the chart of the range."""
    from kpictl.cli.render.kpis import format_value
    from kpictl.cli.render.svg_charts import line_chart
    from kpictl.cli.render.trends import change

    series = report.factory_series.get(latest.kpi_name, [])
    chart = ""
    if series:
        labels = [point.period_end for point in series]
        values = [point.value for point in series]
        chart = line_chart(f"chart-{latest.kpi_name}", latest.kpi_name, labels, values)
    return FactoryCard(
        name=latest.kpi_name,
        unit=latest.unit or "",
        value=_shown(latest, format_value),
        change=change(report.factory_trends.get((latest.kpi_name, None), [])),
        period=_period(latest),
        chart=chart,
        points=len(series),
        window=_hours(series[-1].window) if series else "",
    )


def _period(latest: KpiValue) -> str:
    if latest.never_computed:
        return ""
    return f"{instant(latest.period_start)} .. {instant(latest.period_end)}"


def _hours(window: timedelta | None) -> str:
    """A window length as the operator set it: '24 h', '168 h', '90 min'."""
    if window is None:
        return ""
    seconds = int(window.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def _shown(latest: KpiValue, format_value: Any) -> str:
    if latest.never_computed:
        return "never computed"
    return "no data" if latest.value is None else str(format_value(latest.value))


def product_rows(report: Report) -> list[ProductRow]:
    """One row per product: per product KPI its latest value and its trend cell."""
    from kpictl.cli.render.kpis import format_value, trend_cell

    names = [kpi.name for kpi in registry.at_level("product")]
    by_product: dict[Any, dict[str, KpiValue]] = {}
    for value in report.products:
        by_product.setdefault((value.product or str(value.scope_id), value.scope_id), {})[
            value.kpi_name
        ] = value
    rows = []
    for (product, scope_id), values in by_product.items():
        cells = []
        for name in names:
            found = values.get(name)
            if found is None:
                cells.append(("", ""))
                continue
            series: Sequence[Decimal | None] = report.product_trends.get((name, scope_id), [])
            cells.append((_shown(found, format_value), trend_cell(series)))
        rows.append(ProductRow(product, cells))
    return rows


def _tenant_charts(report: Report) -> list[tuple[str, str]]:
    """(metric, inline SVG) per history metric of the tenant, over its weeks in range."""
    from kpictl.cli.render.svg_charts import line_chart

    if report.tenant is None or not report.tenant.rows:
        return []
    rows = report.tenant.rows
    weeks = [row[0] for row in rows]
    charts = []
    for column, metric in enumerate(METRICS, start=1):
        values = [cast(Decimal | None, row[column]) for row in rows]
        charts.append((metric, line_chart(f"tenant-{metric}", metric, weeks, values)))
    return charts
