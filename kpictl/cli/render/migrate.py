"""`kpictl migrate` output: the status document and lines, what a migration did, what an
adoption did (docs/spec/cli.md, "Migrations"; docs/spec/adoption.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kpictl.services.adoption.steps import AdoptionResult
    from kpictl.services.schema.migrate import (
        AdoptAndMigrateResult,
        MigrationResult,
        MigrationStatus,
    )


def status_exit_code(state: MigrationStatus) -> int:
    """0 at head, 1 behind."""
    return 0 if state.up_to_date else 1


def status_document(state: MigrationStatus, adoption: list[str] | None) -> dict[str, Any]:
    """`migrate --status --format json`; `adoption` only for an AFU-9 database not adopted."""
    from kpictl.cli.output import success

    document: dict[str, Any] = {
        "current": state.current,
        "head": state.head,
        "up_to_date": state.up_to_date,
        "pending": state.pending,
    }
    if adoption is not None:
        document["adoption"] = adoption
    return success(document)


def migration_document(result: MigrationResult) -> dict[str, Any]:
    """`migrate --format json`: the revisions before and after, and what it created or put back."""
    from dataclasses import asdict

    from kpictl.cli.output import success

    return success(asdict(result))


def adoption_document(result: AdoptAndMigrateResult) -> dict[str, Any]:
    """`migrate --adopt --format json`: what the adoption did, then the upgrade that followed."""
    from dataclasses import asdict

    from kpictl.cli.output import success

    return success({"adoption": asdict(result.adoption), **asdict(result.migration)})


def status_lines(state: MigrationStatus, adoption: list[str] | None) -> list[str]:
    verdict = "up to date" if state.up_to_date else f"behind ({len(state.pending)} pending)"
    lines = [f"current: {state.current or 'none'}", f"head:    {state.head}", f"status:  {verdict}"]
    if adoption is not None:
        lines.append("AFU-9 tables found, not adopted; `kpictl migrate --adopt` would:")
        lines.extend(f"  - {line}" for line in adoption)
    return lines


def migration_lines(result: MigrationResult) -> list[str]:
    """Source tables created, what was found broken at head and put back, the revisions."""
    lines = []
    if result.sources_created:
        lines.append(f"created source tables: {', '.join(result.sources_created)}")
    lines.extend(f"repaired: {line}" for line in result.repaired)
    lines.extend(f"rebuilt index concurrently: {line}" for line in result.indexes_rebuilt)
    lines.append(f"migrated: {result.before or 'base'} -> {result.after or 'base'}")
    return lines


def adoption_lines(adoption: AdoptionResult) -> list[str]:
    if not adoption.adopted:
        return [f"nothing to adopt ({adoption.reason})"]
    return [
        "adopted the AFU-9 database:",
        *(f"  - {line}" for line in adoption.summary),
        f"removed {adoption.duplicates_removed} duplicate snapshots; "
        f"kept {adoption.snapshots_kept}",
        f"abandoned {adoption.jobs_abandoned} jobs of the old scheduler",
        f"adopt job: {adoption.job_id}",
    ]
