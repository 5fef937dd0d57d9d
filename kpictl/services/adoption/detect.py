"""Is there an AFU-9 database to adopt here, was it adopted, and what adoption would do."""

from __future__ import annotations

from sqlalchemy import Connection, text

from kpictl.errors import CommandFailed
from kpictl.services.adoption.plan import build_plan
from kpictl.services.adoption.steps import ADOPTED_REVISION, MARKER_TABLE, relation_exists


def is_adopted(connection: Connection) -> bool:
    """Was this database adopted from AFU-9 (the marker table exists)?"""
    return relation_exists(connection, MARKER_TABLE)


def needs_adoption(connection: Connection) -> bool:
    """AFU-9's KPI tables are here and kpictl's version table names no revision."""
    from kpictl.db.migrations import current_revision

    return relation_exists(connection, "kpi_snapshots") and current_revision(connection) is None


def pending_adoption(connection: Connection, source_timezone: str = "UTC") -> list[str] | None:
    """What `migrate --adopt` would do here, or None when there is nothing to adopt."""
    if not needs_adoption(connection):
        return None
    return build_plan(connection, source_timezone, {}).describe()


def adoption_required_error(lines: list[str]) -> CommandFailed:
    listed = "\n".join(f"  - {line}" for line in lines)
    return CommandFailed(
        "AFU-9 tables found, not adopted: this database holds the AFU-9 control center's KPI "
        "tables and no kpictl revision. `kpictl migrate --adopt` would, in one transaction:\n"
        + listed,
        hint="back up first (docs/OPERATIONS.md, 'Adopting an AFU-9 database'), review "
        "`kpictl migrate --adopt --sql`, then run `kpictl migrate --adopt`",
    )


def refuse_downgrade(connection: Connection, revision: str) -> None:
    """Adoption is a one-way data migration: no downgrade below its revision."""
    if not is_adopted(connection):
        return
    from alembic.script import ScriptDirectory

    from kpictl.db.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    below = {rev.revision for rev in script.iterate_revisions(ADOPTED_REVISION, "base")}
    below = (below - {ADOPTED_REVISION}) | {"base"}
    if revision not in below:
        return
    adopted_at = connection.execute(
        text(f"SELECT min(adopted_at) FROM {MARKER_TABLE}")  # constant name
    ).scalar()
    when = f" on {adopted_at:%Y-%m-%d %H:%M} UTC" if adopted_at else ""
    raise CommandFailed(
        f"refusing to downgrade to {revision}: this database was adopted from AFU-9{when} "
        f"(revision {ADOPTED_REVISION}); going below it would drop the platform's KPI data and "
        "break its views, functions and trigger. Adoption is a one-way data migration.",
        hint="to undo an adoption, restore the backup taken before it (docs/OPERATIONS.md)",
    )
