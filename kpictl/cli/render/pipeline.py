"""`kpictl aggregate` and `kpictl backfill` output: the dry run's plan, the run's summary and
its exit code (docs/spec/pipeline.md §4, §5)."""

from __future__ import annotations

from typing import Any

from kpictl.services.pipeline.run import PipelineResult
from kpictl.services.pipeline.steps import Plan


def plan_document(plan: Plan) -> dict[str, Any]:
    """`aggregate --dry-run --format json`."""
    return {
        "dryRun": True,
        "periodStart": plan.period.start,
        "periodEnd": plan.period.end,
        "runLevel": plan.pending_runs,
        "productLevel": plan.products,
        "factoryLevel": 1,
        "terminalRuns": plan.terminal_runs,
        "invalidRuns": plan.invalid_runs,
    }


def plan_lines(plan: Plan) -> list[str]:
    return [
        f"Period: {plan.period.label()} (dry run, nothing written)",
        f"Run level:     {plan.pending_runs} runs to snapshot",
        f"Product level: {plan.products} products",
        f"Factory level: 1 ({plan.terminal_runs} terminal runs, {plan.invalid_runs} invalid)",
    ]


def result_lines(result: PipelineResult) -> list[str]:
    """What the job wrote; for a backfill, its buckets; the invalid runs it left out."""
    lines = [
        f"{result.job_type} {result.status}: {result.snapshots_created} snapshots "
        f"in {result.duration_ms} ms (job {result.job_id})"
    ]
    if result.job_type == "backfill":
        lines.append(
            f"buckets: {len(result.periods)} computed, {result.skipped_buckets} skipped, "
            f"{len(result.failed_buckets)} failed"
        )
    if result.invalid_runs:
        lines.append(f"invalid runs left out: {result.invalid_runs}")
    return lines


def result_exit_code(result: PipelineResult) -> int:
    """0 completed; 1 otherwise (a backfill with a failed bucket)."""
    return 0 if result.status == "completed" else 1
