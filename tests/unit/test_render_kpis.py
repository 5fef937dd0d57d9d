"""The `kpis` renderers and the one Decimal policy of JSON, on values built by hand."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kpictl.cli import output
from kpictl.cli.render import kpis as render
from kpictl.serialize import decimal_json, json_default
from kpictl.services.reports.latest import KpiValue

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
END = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
CALCULATED = datetime(2026, 12, 2, 0, 5, 30, tzinfo=UTC)
SCOPE = uuid.UUID("22222222-2222-4222-8222-222222222222")


def value(name: str, amount: Decimal | None, **changes) -> KpiValue:
    fields = dict(
        kpi_name=name,
        level="factory",
        scope_id=None,
        product=None,
        value=amount,
        unit="%",
        kpi_version="1",
        period_start=START,
        period_end=END,
        calculated_at=CALCULATED,
    )
    return KpiValue(**{**fields, **changes})


def never(name: str) -> KpiValue:
    return KpiValue(name, "factory", None, None, None, "s", "2", None, None, None)


VALUES = [value("success_rate", Decimal("66.6667")), value("mtti", None), never("mttr")]


def written(document) -> str:
    out = io.StringIO()
    output.emit_json(document, out)
    return out.getvalue()


def test_json_document_decimal_as_number_null_as_null():
    text = written(render.as_document(VALUES))
    assert '"value": 66.6667' in text and '"value": null' in text
    document = json.loads(text)
    assert document["status"] == "success"
    assert document["data"][0] == {
        "kpi_name": "success_rate",
        "level": "factory",
        "scope_id": None,
        "product": None,
        "value": 66.6667,
        "unit": "%",
        "kpi_version": "1",
        "period_start": "2026-12-01T00:00:00+00:00",
        "period_end": "2026-12-02T00:00:00+00:00",
        "calculated_at": "2026-12-02T00:05:30+00:00",
    }
    assert document["data"][2]["calculated_at"] is None


def test_json_writes_integral_decimals_as_floats_and_counts_as_ints():
    text = written({"value": Decimal("40"), "count": 3, "scope": SCOPE})
    assert json.loads(text) == {"value": 40.0, "count": 3, "scope": str(SCOPE)}
    assert '"value": 40.0' in text and '"count": 3' in text


@pytest.mark.parametrize(
    ("number", "places", "text"),
    [
        (Decimal("66.6667"), None, "66.6667"),
        (Decimal("40"), None, "40.0"),
        (Decimal("-0.10"), None, "-0.1"),
        (Decimal("NaN"), None, "NaN"),
        (Decimal("12.5"), 2, "12.50"),
        (Decimal("0.005"), 2, "0.01"),
        (Decimal("-0.005"), 2, "-0.01"),
        (Decimal("7"), 0, "7"),
    ],
)
def test_one_decimal_policy(number, places, text):
    assert decimal_json(number, places) == text
    if places is None:  # json.dumps writes the default's float as the policy's text
        assert json.dumps(json_default(number)) == text


def test_csv_rows_are_raw_values_in_column_order():
    rows = render.csv_rows(VALUES[:1])
    assert rows == [
        ["success_rate", "factory", None, None, Decimal("66.6667"), "%", "1", START, END,
         CALCULATED]
    ]  # fmt: skip
    assert len(render.COLUMNS) == len(rows[0])
    out = io.StringIO()
    output.emit_csv(render.COLUMNS, render.csv_rows(VALUES), out)
    assert out.getvalue().splitlines()[2] == (
        "mtti,factory,,,,%,1,2026-12-01T00:00:00+00:00,2026-12-02T00:00:00+00:00,"
        "2026-12-02T00:05:30+00:00"
    )


def test_factory_table_has_no_product_column():
    columns, rows = render.table(VALUES, "factory")
    assert columns == ["kpi_name", "value", "unit", "kpi_version", "period", "calculated_at"]
    assert rows == [
        ["success_rate", "66.67", "%", "1", "2026-12-01 00:00 .. 2026-12-02 00:00", CALCULATED],
        ["mtti", "no data", "%", "1", "2026-12-01 00:00 .. 2026-12-02 00:00", CALCULATED],
        ["mttr", "never computed", "s", "2", "", None],
    ]


def test_product_table_shows_the_product_or_its_id():
    named = value("mtti", Decimal("12.5"), level="product", scope_id=SCOPE, product="acme/app")
    unnamed = value("mtti", Decimal("1"), level="product", scope_id=SCOPE, period_end=CALCULATED)
    columns, rows = render.table([named, unnamed], "product")
    assert columns[:3] == ["kpi_name", "product", "value"]
    assert rows[0][:3] == ["mtti", "acme/app", "12.5"]
    assert rows[1][1] == str(SCOPE) and rows[1][5].endswith(".. 2026-12-02 00:05:30")


@pytest.mark.parametrize(
    ("number", "shown"),
    [("40", "40"), ("66.6666", "66.67"), ("0", "0"), ("12.5", "12.5"), ("1234.005", "1234.01"),
     ("1E+30", "1E+30")],  # too many digits to round: shown as stored
)  # fmt: skip
def test_format_value(number, shown):
    assert render.format_value(Decimal(number)) == shown
