"""The `history` renderers on rows and outcomes built by hand: the export's JSON writer and
table rows, the fill's tables and its exit code (decided by the CLI, not the service)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from kpictl.cli.render import history as render
from kpictl.services.history.fill import (
    FORBIDDEN,
    INTERNAL_ERROR,
    NO_AVI,
    FillRun,
    TenantOutcome,
    failed_of,
    summarize,
)
from kpictl.services.history.tenants import Tenant

GOLDEN = Path(__file__).parent.parent / "golden"
ACME = Tenant(uuid.UUID("11111111-1111-4111-8111-111111111111"), "acme")
ROWS = [
    (date(2025, 12, 29), D("10.00"), D("20.50"), None, D("1234.50"), D("100.00"), None),
    (date(2026, 1, 5), D("11.25"), D("21.00"), D("30.00"), D("-5.00"), D("87.51"), D("12.35")),
    (date(2026, 1, 12), D("12.00"), None, D("31.00"), D("0.00"), D("90.00"), D("50.00")),
    (date(2026, 2, 2), D("13.00"), D("22.00"), D("32.00"), D("10.00"), D("80.00"), None),
    (date(2026, 4, 6), D("14.00"), D("23.00"), D("33.00"), D("20.00"), D("70.00"), D("25.00")),
]


def test_json_writer_matches_the_golden_file():
    out = io.StringIO()
    assert render.write_json(ACME, iter(ROWS), out) == 5
    assert out.getvalue() == (GOLDEN / "history_week.json").read_text(encoding="utf-8")


def test_json_writer_without_rows():
    out = io.StringIO()
    assert render.write_json(ACME, iter([]), out) == 0
    assert out.getvalue() == (GOLDEN / "history_empty.json").read_text(encoding="utf-8")
    assert json.loads(out.getvalue())["data"] == []


def test_json_numbers_keep_two_decimals_and_null_stays_null():
    out = io.StringIO()
    render.write_json(ACME, iter([(date(2026, 1, 5), D("12.5"), D("0.005"), None, 7, D("-1"),
                                   D("99.999"))]), out)  # fmt: skip
    record = out.getvalue().splitlines()[4].strip()
    assert record == (
        '{"as_of": "2026-01-05", "aiv_pct": 12.50, "ati_pct": 0.01, "crs_pct": null, '
        '"elasticity_usd_per_point": 7.00, "vli_integrity_pct": -1.00, "hrp_pct": 100.00}'
    )
    assert json.loads(out.getvalue())["data"][0]["crs_pct"] is None


def test_table_rows_are_text_with_two_decimals():
    assert render.table_rows(iter(ROWS[:1])) == [
        ["2025-12-29", "10.00", "20.50", "", "1234.50", "100.00", ""]
    ]


def outcome(slug: str, code: str | None = None, message: str | None = None) -> TenantOutcome:
    tenant = Tenant(uuid.uuid5(uuid.NAMESPACE_DNS, slug), slug)
    as_of = date(2026, 11, 30) if code is None else None
    return TenantOutcome(tenant, code, as_of, 1 if code is None else 0, message)


def run(*outcomes: TenantOutcome, single: bool = False) -> FillRun:
    listed = list(outcomes)
    result = listed[0].as_single_result() if single else summarize(listed)
    return FillRun(listed, result, failed_of(listed, single=single), 0, 0)


@pytest.mark.parametrize(
    ("outcomes", "single", "code"),
    [
        ([], False, 0),
        ([outcome("a"), outcome("b", NO_AVI)], False, 0),  # skips are allowed
        ([outcome("a", NO_AVI)], False, 0),
        ([outcome("a", NO_AVI)], True, 1),  # the one tenant asked for has no report
        ([outcome("a"), outcome("b", INTERNAL_ERROR)], False, 1),
        ([outcome("a"), outcome("b", FORBIDDEN)], False, 1),  # some tenants were filled
        ([outcome("a", FORBIDDEN), outcome("b", INTERNAL_ERROR)], False, 1),
        ([outcome("a", FORBIDDEN), outcome("b", FORBIDDEN), outcome("c", NO_AVI)], False, 77),
        ([outcome("a", FORBIDDEN)], True, 77),
    ],
)
def test_fill_exit_code(outcomes, single, code):
    finished = run(*outcomes, single=single)
    assert render.fill_exit_code(finished) == code
    assert finished.failed is (code != 0)  # the job row says failed exactly when exit != 0


def test_fill_tables():
    one = outcome("acme")
    assert render.fill_single_rows(one) == [["acme", "ok", "2026-11-30"]]
    assert render.fill_single_rows(outcome("acme", NO_AVI, "no AVI report")) == [
        ["acme", NO_AVI, "no AVI report"]
    ]
    finished = run(outcome("a"), outcome("c", FORBIDDEN, "denied"), outcome("b", NO_AVI))
    assert render.fill_summary_rows(finished.result) == [[1, 1, 1, 3]]
    tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "c"))
    assert render.fill_error_rows(finished.result) == [["c", tenant_id, FORBIDDEN, "denied"]]
