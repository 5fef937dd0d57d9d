"""`kpictl kpis` output: the JSON document, CSV rows and table rows of the latest KPI values."""

from __future__ import annotations

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


def table(values: list[KpiValue], level: str) -> tuple[list[str], list[list[Any]]]:
    """For people: 'no data' for a NULL value, 'never computed' for a KPI without snapshots;
    a product column at product level only."""
    columns = ["kpi_name", "product", "value", "unit", "kpi_version", "period", "calculated_at"]
    rows = []
    for item in values:
        if item.never_computed:
            shown, period = "never computed", ""
        else:
            shown = "no data" if item.value is None else format_value(item.value)
            period = f"{_instant(item.period_start)} .. {_instant(item.period_end)}"
        product = item.product or ("" if item.scope_id is None else str(item.scope_id))
        unit = item.unit or ""
        rows.append(
            [item.kpi_name, product, shown, unit, item.kpi_version, period, item.calculated_at]
        )
    if level == "factory":
        columns.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    return columns, rows


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
