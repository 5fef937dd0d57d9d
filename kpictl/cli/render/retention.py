"""`kpictl retention` output: one row per target (docs/spec/pipeline.md §5), what was deleted or,
with --dry-run, what would be."""

from __future__ import annotations

from typing import Any

from kpictl.services.maintenance.retention import RetentionResult

COLUMNS = ["target", "table", "older_than_days", "cutoff", "deleted"]


def columns(result: RetentionResult) -> list[str]:
    return COLUMNS if not result.dry_run else [*COLUMNS[:-1], "would_delete"]


def rows(result: RetentionResult) -> list[list[Any]]:
    return [[t.target, t.table, t.days, t.cutoff, t.deleted] for t in result.targets]
