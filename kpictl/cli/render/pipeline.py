"""`kpictl aggregate` and `kpictl backfill` output: the dry run's plan, the run's summary and
its exit code (docs/spec/pipeline.md §4, §5)."""

from __future__ import annotations

from typing import Any

from kpictl.cli.output import success
from kpictl.services.pipeline.run import PipelineResult
from kpictl.services.pipeline.steps import PeriodCounts, Plan


def plan_document(plan: Plan) -> dict[str, Any]:
    """`aggregate --dry-run --format json` (docs/OUTPUT.md): what would be computed."""
    return success(
        {
            "dry_run": True,
            "period_start": plan.period.start,
            "period_end": plan.period.end,
            "run_level": int(plan.pending_runs),
            "product_level": int(plan.products),
            "factory_level": 1,
            "terminal_runs": int(plan.terminal_runs),
            "invalid_runs": int(plan.invalid_runs),
        }
    )


def result_document(result: PipelineResult) -> dict[str, Any]:
    """`aggregate` / `backfill --format json` (docs/OUTPUT.md): the job and, per period or
    bucket, what it wrote; counts are integers."""
    return success(
        {
            "job_id": result.job_id,
            "job_type": result.job_type,
            "job_status": result.status,
            "snapshots_created": result.snapshots_created,
            "invalid_runs": int(result.invalid_runs),
            "duration_ms": int(result.duration_ms),
            "skipped_buckets": int(result.skipped_buckets),
            "failed_buckets": result.failed_buckets,
            "periods": [_period(counts) for counts in result.periods],
        }
    )


def _period(counts: PeriodCounts) -> dict[str, Any]:
    return {
        "period_start": counts.period_start,
        "period_end": counts.period_end,
        "runs": int(counts.runs),
        "products": int(counts.products),
        "snapshots": int(counts.snapshots),
        "run_snapshots": int(counts.run_snapshots),
        "product_snapshots": int(counts.product_snapshots),
        "factory_snapshots": int(counts.factory_snapshots),
        "invalid_runs": int(counts.invalid_runs),
        "timings_ms": {step: int(ms) for step, ms in counts.timings_ms.items()},
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
