"""The freshness renderers on reports built by hand: no database."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kpictl.cli import output
from kpictl.cli.render import freshness as render
from kpictl.services.reports.freshness import FreshnessReport, KpiFreshness

CHECKED = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def kpi(name: str, age: float | None, status: str, level: str = "factory") -> KpiFreshness:
    last = None if age is None else CHECKED - timedelta(seconds=age)
    return KpiFreshness(name, level, last, age, status)


def report(*kpis: KpiFreshness, warn: float = 300, error: float = 900) -> FreshnessReport:
    return FreshnessReport("factory", warn, error, CHECKED, list(kpis))


def json_of(document) -> dict:
    out = io.StringIO()
    output.emit_json(document, out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize(
    ("statuses", "code", "word"),
    [
        ((), 0, "OK"),
        (("fresh", "fresh"), 0, "OK"),
        (("fresh", "stale"), 1, "WARNING"),
        (("stale", "expired"), 2, "CRITICAL"),
        (("fresh", "missing"), 2, "CRITICAL"),
    ],
)
def test_exit_code_is_that_of_the_worst_status(statuses, code, word):
    checked = report(*(kpi(f"k{i}", 1.0, status) for i, status in enumerate(statuses)))
    assert render.exit_code(checked) == code
    assert render.render_nagios(checked).startswith(f"KPI FRESHNESS {word} - ")


def test_nagios_ok_line_with_perfdata():
    line = render.render_nagios(report(kpi("mtti", 42.25, "fresh"), kpi("mttr", 60, "fresh")))
    assert line == (
        "KPI FRESHNESS OK - 2 of 2 factory KPIs fresh | mtti=42.25s;300;900;0; mttr=60s;300;900;0;"
    )


def test_nagios_warning_line_names_the_stale_kpi_with_its_rounded_age():
    line = render.render_nagios(report(kpi("mtti", 400.6, "stale"), kpi("mttr", 5, "fresh")))
    assert line == (
        "KPI FRESHNESS WARNING - stale: mtti (401s); 1 of 2 factory KPIs fresh | "
        "mtti=400.6s;300;900;0; mttr=5s;300;900;0;"
    )


def test_nagios_critical_line_lists_expired_then_missing_then_stale():
    checked = report(
        kpi("a", 400, "stale"),
        kpi("b", None, "missing"),
        kpi("c", 1000.1234, "expired"),
        warn=300.5,
        error=900,
    )
    assert render.render_nagios(checked) == (
        "KPI FRESHNESS CRITICAL - expired: c (1000s); missing: b; stale: a (400s); "
        "0 of 3 factory KPIs fresh | "
        "a=400s;300.5;900;0; b=U;300.5;900;0; c=1000.123s;300.5;900;0;"
    )


def test_nagios_unknown_line():
    assert render.render_nagios_unknown("database unreachable") == (
        "KPI FRESHNESS UNKNOWN - database unreachable"
    )


def families(text: str) -> dict:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_prometheus_text_parses_with_one_status_sample_per_status():
    text = render.render_prometheus(
        report(kpi("mtti", 12.5, "fresh"), kpi("mttr", None, "missing"))
    )
    parsed = families(text)
    assert parsed["kpictl_freshness_check_success"] == [({}, 1.0)]
    labels = {"kpi": "mtti", "level": "factory"}
    assert parsed["kpictl_kpi_age_seconds"] == [(labels, 12.5)]  # mttr: never computed, no age
    assert parsed["kpictl_kpi_last_calculated_timestamp_seconds"] == [
        (labels, CHECKED.timestamp() - 12.5)
    ]
    statuses = parsed["kpictl_kpi_freshness_status"]
    assert len(statuses) == 8
    assert ({**labels, "status": "fresh"}, 1.0) in statuses
    assert ({"kpi": "mttr", "level": "factory", "status": "missing"}, 1.0) in statuses
    assert sum(value for _, value in statuses) == 2
    assert parsed["kpictl_freshness_warn_after_seconds"] == [({}, 300.0)]
    assert parsed["kpictl_freshness_error_after_seconds"] == [({}, 900.0)]
    assert parsed["kpictl_freshness_check_timestamp_seconds"] == [({}, CHECKED.timestamp())]
    assert text.endswith("\n")


def test_prometheus_label_values_are_escaped():
    odd = 'we"ird\\name\nnext'
    text = render.render_prometheus(report(kpi(odd, 1, "fresh")))
    assert 'kpi="we\\"ird\\\\name\\nnext"' in text
    ages = families(text)["kpictl_kpi_age_seconds"]
    assert ages == [({"kpi": odd, "level": "factory"}, 1.0)]


def test_prometheus_when_the_check_could_not_run():
    text = render.render_prometheus(None)
    assert families(text) == {"kpictl_freshness_check_success": [({}, 0.0)]}


def test_json_document_nulls_ints_and_rounding():
    checked = report(kpi("mtti", 12.34567, "fresh"), kpi("mttr", None, "missing"))
    document = json_of(render.report_document(checked))
    assert document["data"] == [
        {
            "kpi_name": "mtti",
            "level": "factory",
            "freshness_seconds": 12.346,
            "last_calculated_at": (CHECKED - timedelta(seconds=12.34567)).isoformat(),
            "is_fresh": True,
            "status": "fresh",
        },
        {
            "kpi_name": "mttr",
            "level": "factory",
            "freshness_seconds": None,
            "last_calculated_at": None,
            "is_fresh": False,
            "status": "missing",
        },
    ]
    overall = document["overall"]
    assert overall["exit_code"] == 2 and isinstance(overall["exit_code"], int)
    assert overall["counts"] == {"fresh": 1, "stale": 0, "expired": 0, "missing": 1}
    assert overall["status"] == "missing" and overall["is_fresh"] is False
    assert overall["checked_at"] == "2026-12-02T12:00:00+00:00"


def test_the_could_not_check_outputs():
    assert json.loads(render.unknown_text("no database", "json")) == {
        "status": "error",
        "error": {"message": "no database", "exit_code": 3},
    }
    assert render.unknown_text("no database", "nagios") == ("KPI FRESHNESS UNKNOWN - no database\n")
    assert "kpictl_freshness_check_success 0.0" in render.unknown_text("x", "prometheus")
    assert render.unknown_text("no database", "table") == ""


def test_table_rows_and_title():
    checked = report(kpi("mtti", 430, "stale"), kpi("mttr", None, "missing"))
    assert render.table_rows(checked) == [
        ["mtti", "factory", "stale", "7m 10s", CHECKED - timedelta(seconds=430)],
        ["mttr", "factory", "missing", "never", None],
    ]
    assert render.table_title(checked) == "factory KPIs: stale after 5m 0s, expired after 15m 0s"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(-5, "0s"), (0, "0s"), (42.9, "42s"), (60, "1m 0s"), (430, "7m 10s"), (7380, "2h 3m"),
     (86_400, "1d 0h"), (273_600, "3d 4h")],
)  # fmt: skip
def test_human_age(seconds, shown):
    assert render.human_age(seconds) == shown
