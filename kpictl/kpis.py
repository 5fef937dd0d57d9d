"""The KPI registry: the ten KPIs of docs/spec/pipeline.md §3 (version 1.0.0), in one place.

The aggregation SQL, `kpictl kpis`, `kpictl freshness`, the job rows and the docs all read this
list. Adding a KPI means one entry here plus its SQL in the aggregation service.
"""

from __future__ import annotations

from dataclasses import dataclass

KPI_VERSION = "1.0.0"


@dataclass(frozen=True)
class KpiDefinition:
    name: str
    level: str  # run | product | factory
    unit: str
    description: str
    version: str = KPI_VERSION


KPIS: tuple[KpiDefinition, ...] = (
    KpiDefinition(
        "run_duration", "run", "ms", "Duration of the terminal run: completed_at - started_at."
    ),
    KpiDefinition(
        "token_usage",
        "run",
        "tokens",
        "Sum over the run's agent runs of total_tokens, or prompt_tokens + completion_tokens "
        "where total_tokens is NULL (NULL parts count 0); runs with at least one agent run.",
    ),
    KpiDefinition(
        "tool_call_success_rate",
        "run",
        "percent",
        "100 x calls with error IS NULL / all calls of the run; runs with at least one call.",
    ),
    KpiDefinition(
        "product_success_rate",
        "product",
        "percent",
        "100 x completed / (completed + failed), terminal runs of the repository in the period.",
    ),
    KpiDefinition(
        "product_throughput",
        "product",
        "runs_per_day",
        "Terminal runs of the repository in the period / (period hours / 24).",
    ),
    KpiDefinition(
        "product_avg_duration",
        "product",
        "ms",
        "Mean duration of the repository's terminal runs in the period.",
    ),
    KpiDefinition(
        "mtti",
        "factory",
        "ms",
        "Mean Time To Insight: mean duration of all terminal runs in the period.",
    ),
    KpiDefinition(
        "success_rate",
        "factory",
        "percent",
        "100 x completed / (completed + failed), all terminal runs in the period.",
    ),
    KpiDefinition(
        "factory_throughput",
        "factory",
        "runs_per_day",
        "All terminal runs in the period / (period hours / 24).",
    ),
    KpiDefinition(
        "steering_accuracy",
        "factory",
        "percent",
        "100 x accepted / (accepted + overridden + escalated), verdicts decided in the period.",
    ),
)

BY_NAME: dict[str, KpiDefinition] = {kpi.name: kpi for kpi in KPIS}
LEVELS = ("run", "product", "factory")


def at_level(level: str) -> tuple[KpiDefinition, ...]:
    return tuple(kpi for kpi in KPIS if kpi.level == level)


def names(level: str | None = None) -> list[str]:
    return [kpi.name for kpi in KPIS if level is None or kpi.level == level]
