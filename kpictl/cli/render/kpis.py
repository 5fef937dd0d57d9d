"""`kpictl kpis` output: the JSON document, CSV rows and table rows of the latest KPI values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from kpictl.services.reports.latest import KpiValue

COLUMNS = [
    "kpi_name",
    "level",
    "scope_id",
    "product",
    "value",
    "unit",
    "kpi_version",
    "period_start",
    "period_end",
    "calculated_at",
]


def as_document(values: list[KpiValue]) -> dict[str, Any]:
    """The JSON document (docs/OUTPUT.md): the CSV's rows as objects keyed by its columns, value
    null for no data."""
    from kpictl.cli.output import rows_as_objects, success

    return success(rows_as_objects(COLUMNS, csv_rows(values)))


def csv_rows(values: list[KpiValue]) -> list[list[Any]]:
    """Raw values (empty cell for NULL) in the order of COLUMNS."""
    return [[getattr(item, name) for name in COLUMNS] for item in values]


# Left out first when a terminal is too narrow (KPI names are never cut).
OPTIONAL = ("calculated_at", "kpi_version", "unit", "period", "trend")


def table(
    values: list[KpiValue],
    level: str,
    trends: Mapping[tuple[str, Any], Sequence[Decimal | None]] | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """For people: 'no data' for a NULL value, 'never computed' for a KPI without snapshots;
    a product column at product level only; with `trends`, a trend column (the same window
    before, as a sparkline, and the change since the previous value)."""
    columns = ["kpi_name", "product", "value", "unit", "kpi_version", "period", "calculated_at"]
    rows = [_table_row(item) for item in values]
    if trends is not None:
        _add_trends(values, columns, rows, trends)
    if level == "factory":
        columns.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    return columns, rows


def _table_row(item: KpiValue) -> list[Any]:
    if item.never_computed:
        shown, period = "never computed", ""
    else:
        shown = "no data" if item.value is None else format_value(item.value)
        period = f"{_instant(item.period_start)} .. {_instant(item.period_end)}"
    product = item.product or ("" if item.scope_id is None else str(item.scope_id))
    unit = item.unit or ""
    return [item.kpi_name, product, shown, unit, item.kpi_version, period, item.calculated_at]


def _add_trends(
    values: list[KpiValue],
    columns: list[str],
    rows: list[list[Any]],
    trends: Mapping[tuple[str, Any], Sequence[Decimal | None]],
) -> None:
    columns.append("trend")
    for item, row in zip(values, rows, strict=True):
        row.append(trend_cell(trends.get((item.kpi_name, item.scope_id), [])))


def trend_cell(series: Sequence[Decimal | None]) -> str:
    """`▁▃▅█ ↑ +3.5`: the sparkline from the first value on (the windows before it hold none),
    then the change since the previous value."""
    from kpictl.cli.render.trends import change, sparkline

    first = next((i for i, value in enumerate(series) if value is not None), len(series))
    return f"{sparkline(series[first:])} {change(series)}".strip()


def format_value(value: Decimal) -> str:
    """At most two decimals, no trailing zeros: 40 -> '40', 66.6667 -> '66.67'."""
    try:
        text = f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    except InvalidOperation:  # more digits than the decimal context holds: show as stored
        return str(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _instant(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


TREND_COLUMNS = ["period_end", "value"]


def trend_rows(series: Sequence[Any]) -> list[list[Any]]:
    return [[point.period_end, point.value] for point in series]


def trend_lines(
    series: Sequence[Any], definition: Any, product: str | None, width: int
) -> list[str]:
    """A title, the chart (the newest points that fit), and the span it covers."""
    from kpictl.cli.render.trends import line_chart

    scope = product or "factory"
    title = f"{definition.name} ({scope}, {definition.unit})"
    if not series:
        return [title, "(no values in this range; run `kpictl aggregate` or `kpictl backfill`)"]
    chart = line_chart([point.value for point in series], width=width, height=10)
    first, last = series[0].period_end, series[-1].period_end
    span = f"{_instant(first)} .. {_instant(last)} UTC, {len(series)} points"
    return [title, *chart, span]
