"""kpictl's Alembic plumbing: the configuration, the revisions (their modules, head, the
`kpictl_*` source indexes each builds) and the database's current revision.

The services that run migrations (`kpictl.services.schema.migrate`), adopt a database
(`kpictl.services.adoption`), check the schema (`kpictl.services.schema.gate`) or repair it all
read revisions through here, so none of them needs another; `kpictl.db.revisions` is the
Alembic-free subset the schema gate uses on every command.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from kpictl.db.revisions import VERSION_TABLE, script_location
from kpictl.errors import UsageError

__all__ = ["VERSION_TABLE", "script_location"]


def alembic_config(
    connection: Connection | None = None, output: io.StringIO | None = None
) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("version_table", VERSION_TABLE)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def revision_module(revision: str) -> Any:
    """The module of one revision file (its SQL constants serve adoption and doctor)."""
    return ScriptDirectory.from_config(alembic_config()).get_revision(revision).module


def source_indexes() -> tuple[tuple[str, str, str], ...]:
    """(name, table, column) of the kpictl_* indexes revisions 0002, 0004 and 0005 build on
    source tables."""
    partial = tuple(
        index[:3]
        for revision in ("0004", "0005")
        for index in revision_module(revision).SOURCE_INDEXES
    )
    return tuple(revision_module("0002").SOURCE_INDEXES) + partial


@dataclass(frozen=True)
class SourceIndex:
    name: str
    table: str
    column: str
    predicate: str | None = None  # partial index

    def describe(self) -> str:
        return f"{self.name} on {self.table} ({self.column})"

    def create_sql(self) -> str:
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} "
            f"({self.column}){where}"
        )


def source_index_definitions(revision: str | None = "head") -> list[SourceIndex]:
    """Every kpictl_* source index the revisions up to `revision` build (SOURCE_INDEXES of
    each revision file: (name, table, column) or (name, table, column, predicate))."""
    if revision is None:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    found = []
    for script_revision in reversed(list(script.iterate_revisions(revision, "base"))):
        for definition in getattr(script_revision.module, "SOURCE_INDEXES", ()):
            found.append(SourceIndex(*definition))
    return found


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or "base"


def known_revisions() -> set[str]:
    """Every revision this kpictl ships."""
    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def known_revision(revision: str) -> None:
    """Raise a usage error unless `revision` names a kpictl revision (or head/base)."""
    if revision in ("head", "base"):
        return
    script = ScriptDirectory.from_config(alembic_config())
    try:
        if script.get_revision(revision) is None:
            raise KeyError(revision)
    except Exception:
        known = ", ".join(rev.revision for rev in script.walk_revisions())
        raise UsageError(f"unknown revision {revision!r} (known: {known}, head, base)") from None


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()
