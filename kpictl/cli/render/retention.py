"""`kpictl retention` output: one row per target (docs/spec/pipeline.md §5), what was deleted or,
with --dry-run, what would be."""

from __future__ import annotations

from typing import Any

from kpictl.services.maintenance.retention import RetentionResult

COLUMNS = ["target", "table", "older_than_days", "cutoff", "deleted"]
# The partitioned table (revision 0008): whole partitions dropped, and their rows as estimated.
PARTITION_COLUMNS = ["partitions_dropped", "partition_rows_estimated"]


def columns(result: RetentionResult) -> list[str]:
    if not result.dry_run:
        return [*COLUMNS, *PARTITION_COLUMNS]
    return [*COLUMNS[:-1], "would_delete", "would_drop_partitions", "partition_rows_estimated"]


def rows(result: RetentionResult) -> list[list[Any]]:
    """`deleted` counts every row past the cut-off: those deleted in batches, exactly, and
    (with --dry-run) those of the partitions that would go whole; after a real run the rows of
    the dropped partitions are in `partition_rows_estimated` only."""
    return [
        [t.target, t.table, t.days, t.cutoff, t.deleted, " ".join(t.partitions), t.partition_rows]
        for t in result.targets
    ]
