"""`kpictl kpis --format prometheus`: the latest KPI values and the jobs' health in the
Prometheus text exposition (node_exporter's textfile collector), made by prometheus_client.

- `kpictl_kpi_<name>{level, scope, scope_id}`: one gauge family per KPI (its unit in the help
  text); `scope` is the product (owner/name) at product level, `factory` at factory level. A KPI
  without a value (no data, never computed) has no sample.
- `kpictl_kpi_period_end_timestamp_seconds{kpi, level, scope}`: the end of that value's period.
- `kpictl_job_last_success_timestamp_seconds{job_type}`, `kpictl_job_last_duration_seconds`,
  `kpictl_job_failures_total` (the failed runs among the job rows kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kpictl import kpis as registry
from kpictl.services.reports.job_health import JobHealth
from kpictl.services.reports.latest import KpiValue

PREFIX = "kpictl_"


def scope_of(value: KpiValue) -> str:
    if value.level == "factory":
        return "factory"
    return value.product or str(value.scope_id)


def render(values: Iterable[KpiValue], health: Iterable[JobHealth]) -> str:
    from kpictl.cli.render.freshness import exposition

    return exposition(kpi_families(list(values)) + job_families(list(health)))


def kpi_families(values: list[KpiValue]) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    families = []
    for kpi in registry.KPIS:
        gauge = GaugeMetricFamily(
            f"{PREFIX}kpi_{kpi.name}",
            f"{kpi.description} Unit: {kpi.unit}. The latest period's value.",
            labels=["level", "scope", "scope_id"],
        )
        for value in values:
            if value.kpi_name == kpi.name and value.value is not None:
                scope_id = "" if value.scope_id is None else str(value.scope_id)
                gauge.add_metric([value.level, scope_of(value), scope_id], float(value.value))
        families.append(gauge)
    return [*families, period_ends(values)]


def period_ends(values: list[KpiValue]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    ends = GaugeMetricFamily(
        f"{PREFIX}kpi_period_end_timestamp_seconds",
        "Unix time of the end of the period of the KPI's latest value.",
        labels=["kpi", "level", "scope"],
    )
    for value in values:
        if value.period_end is not None:
            labels = [value.kpi_name, value.level, scope_of(value)]
            ends.add_metric(labels, value.period_end.timestamp())
    return ends


JOB_FAMILIES = (
    (
        "job_last_success_timestamp_seconds",
        "Unix time the newest completed job of this type ended.",
    ),
    ("job_last_duration_seconds", "How long the newest completed job of this type ran."),
)


def job_families(health: list[JobHealth]) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    success, duration = (
        GaugeMetricFamily(f"{PREFIX}{name}", text, labels=["job_type"])
        for name, text in JOB_FAMILIES
    )
    failures = CounterMetricFamily(
        f"{PREFIX}job_failures",
        "Failed jobs of this type among the job rows kept (retention deletes old ones).",
        labels=["job_type"],
    )
    for job in health:
        if job.last_success_at is not None:
            success.add_metric([job.job_type], job.last_success_at.timestamp())
        if job.last_duration_ms is not None:
            duration.add_metric([job.job_type], job.last_duration_ms / 1000)
        failures.add_metric([job.job_type], job.failures)
    return [success, duration, failures]
