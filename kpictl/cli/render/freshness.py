"""`kpictl freshness` output: the JSON document, table rows, the Nagios/Icinga line and the
Prometheus text exposition of a `FreshnessReport`, and its exit code (docs/spec/pipeline.md §5: 0 all
fresh, 1 any stale, 2 any expired or missing, 3 could not check).
"""

from __future__ import annotations

from typing import Any

from kpictl.serialize import plain_number
from kpictl.services.reports.freshness import (
    EXPIRED,
    FRESH,
    MISSING,
    STALE,
    STATUSES,
    FreshnessReport,
    KpiFreshness,
)

EXIT_CODES = {FRESH: 0, STALE: 1, EXPIRED: 2, MISSING: 2}
UNKNOWN_EXIT_CODE = 3  # the check itself could not run (Nagios UNKNOWN)
NAGIOS_WORDS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
TABLE_COLUMNS = ["kpi_name", "level", "status", "age", "last_calculated_at"]
PROMETHEUS_PREFIX = "kpictl_"


def exit_code(report: FreshnessReport) -> int:
    """The exit code of the worst status (0 for a report without KPIs)."""
    return EXIT_CODES[report.status]


def report_document(report: FreshnessReport) -> dict[str, Any]:
    """The JSON document of docs/spec/pipeline.md §5 (snake_case keys, docs/OUTPUT.md)."""
    from kpictl.cli.output import success

    code = exit_code(report)
    overall = {
        "status": report.status,
        "is_fresh": code == 0,
        "exit_code": code,
        "level": report.level,
        "warn_after_seconds": report.warn_after_seconds,
        "error_after_seconds": report.error_after_seconds,
        "checked_at": report.checked_at,
        "counts": report.counts,
    }
    return success([_kpi_entry(kpi) for kpi in report.kpis], overall=overall)


def _kpi_entry(kpi: KpiFreshness) -> dict[str, Any]:
    return {
        "kpi_name": kpi.kpi_name,
        "level": kpi.level,
        "freshness_seconds": None if kpi.age_seconds is None else round(kpi.age_seconds, 3),
        "last_calculated_at": kpi.last_calculated_at,
        "is_fresh": kpi.is_fresh,
        "status": kpi.status,
    }


def table_title(report: FreshnessReport) -> str:
    return (
        f"{report.level} KPIs: stale after {human_age(report.warn_after_seconds)}, "
        f"expired after {human_age(report.error_after_seconds)}"
    )


def table_rows(report: FreshnessReport) -> list[list[Any]]:
    """Rows under TABLE_COLUMNS: the age for people ('7m 10s', 'never')."""
    return [
        [
            kpi.kpi_name,
            kpi.level,
            kpi.status,
            "never" if kpi.age_seconds is None else human_age(kpi.age_seconds),
            kpi.last_calculated_at,
        ]
        for kpi in report.kpis
    ]


def render_nagios(report: FreshnessReport) -> str:
    """One Nagios/Icinga plugin line: `KPI FRESHNESS <STATE> - <summary> | <perfdata>`."""
    word = NAGIOS_WORDS[exit_code(report)]
    summary = "; ".join(_nagios_summary(report))
    return f"KPI FRESHNESS {word} - {summary} | {_nagios_perfdata(report)}"


def _nagios_summary(report: FreshnessReport) -> list[str]:
    """The KPIs not fresh, worst first (with their age when known), then the fresh count."""
    parts = []
    for status in (EXPIRED, MISSING, STALE):
        affected = [kpi for kpi in report.kpis if kpi.status == status]
        if affected:
            parts.append(f"{status}: {', '.join(_nagios_name(kpi) for kpi in affected)}")
    parts.append(f"{report.counts[FRESH]} of {len(report.kpis)} {report.level} KPIs fresh")
    return parts


def _nagios_name(kpi: KpiFreshness) -> str:
    if kpi.age_seconds is None:
        return kpi.kpi_name
    return f"{kpi.kpi_name} ({plain_number(kpi.age_seconds, 0)}s)"


def _nagios_perfdata(report: FreshnessReport) -> str:
    """`name=AGEs;warn;crit;0;` per KPI (`U` for a KPI never computed)."""
    defaults = (report.warn_after_seconds, report.error_after_seconds)
    return " ".join(
        f"{kpi.kpi_name}="
        + ("U" if kpi.age_seconds is None else f"{plain_number(kpi.age_seconds)}s")
        + ";{};{};0;".format(*map(plain_number, kpi.thresholds or defaults))
        for kpi in report.kpis
    )


def render_nagios_unknown(message: str) -> str:
    return f"KPI FRESHNESS UNKNOWN - {message}"


def render_prometheus(report: FreshnessReport | None) -> str:
    """Prometheus text exposition (node_exporter textfile collector), made by prometheus_client.
    A KPI never computed has no timestamp or age sample but still its status samples; with
    `report=None` (the check could not run) only `kpictl_freshness_check_success 0` is written."""
    families = [
        _family(
            "freshness_check_success",
            "1 when kpictl freshness could read kpi_snapshots, 0 when it could not.",
            [],
            [([], 0 if report is None else 1)],
        )
    ]
    if report is not None:
        families += _kpi_families(report) + _check_families(report)
    return exposition(families)


def exposition(families: list[Any]) -> str:
    """The text exposition of metric families (prometheus_client's), for every renderer."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Families:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())
    return generate_latest(registry).decode("utf-8")


_KPI_LABELS = ["kpi", "level"]


def _kpi_families(report: FreshnessReport) -> list[Any]:
    """Per KPI: when it was last calculated and its age (if ever), and its status."""
    computed = [kpi for kpi in report.kpis if kpi.last_calculated_at is not None]
    return [
        _family(
            "kpi_last_calculated_timestamp_seconds",
            "Unix time of the newest calculated_at of the KPI at this level.",
            _KPI_LABELS,
            [([kpi.kpi_name, kpi.level], kpi.last_calculated_at.timestamp()) for kpi in computed],  # type: ignore[union-attr]
        ),
        _family(
            "kpi_age_seconds",
            "Seconds since the newest calculated_at of the KPI at this level.",
            _KPI_LABELS,
            [([kpi.kpi_name, kpi.level], kpi.age_seconds) for kpi in computed],  # type: ignore[misc]
        ),
        _family(
            "kpi_freshness_status",
            "Freshness status of the KPI: 1 for its current status, 0 for the others.",
            [*_KPI_LABELS, "status"],
            _status_samples(report),
        ),
    ]


def _status_samples(report: FreshnessReport) -> list[tuple[list[str], float]]:
    """Per KPI and status: 1 for the KPI's status, 0 for the others."""
    return [
        ([kpi.kpi_name, kpi.level, status], 1 if kpi.status == status else 0)
        for kpi in report.kpis
        for status in STATUSES
    ]


def _check_families(report: FreshnessReport) -> list[Any]:
    """The thresholds the check used, and when it ran."""
    return [
        _family(
            "freshness_warn_after_seconds",
            "Age above which a KPI is stale.",
            [],
            [([], report.warn_after_seconds)],
        ),
        _family(
            "freshness_error_after_seconds",
            "Age above which a KPI is expired.",
            [],
            [([], report.error_after_seconds)],
        ),
        _family(
            "freshness_check_timestamp_seconds",
            "Unix time of this check.",
            [],
            [([], report.checked_at.timestamp())],
        ),
    ]


def _family(
    name: str, help_text: str, labels: list[str], samples: list[tuple[list[str], float]]
) -> Any:
    """One gauge family of prometheus_client, with a sample per (label values, value)."""
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(f"{PROMETHEUS_PREFIX}{name}", help_text, labels=labels)
    for values, value in samples:
        gauge.add_metric(values, value)
    return gauge


def monitoring_text(report: FreshnessReport, format: str) -> str:
    """The json, nagios or prometheus text of `report` (what stdout or --output gets)."""
    if format == "json":
        from kpictl.cli.output import json_text

        return json_text(report_document(report))
    if format == "nagios":
        return render_nagios(report) + "\n"
    return render_prometheus(report)


def unknown_text(message: str, format: str) -> str:
    """What the json, nagios or prometheus output says when the check could not run; nothing
    for the table."""
    if format == "json":
        from kpictl.cli.output import failure, json_text

        return json_text(failure(message, UNKNOWN_EXIT_CODE))
    if format == "nagios":
        return render_nagios_unknown(message) + "\n"
    if format == "prometheus":
        return render_prometheus(None)
    return ""


def human_age(seconds: float) -> str:
    """42 -> '42s', 430 -> '7m 10s', 7380 -> '2h 3m', 273600 -> '3d 4h'."""
    whole = int(seconds)
    if whole < 60:
        return f"{max(whole, 0)}s"
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"
