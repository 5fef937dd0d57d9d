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


@dataclass(frozen=True)
class SourceIndex:
    name: str
    table: str
    column: str
    predicate: str | None = None  # partial index
    include: str | None = None  # covering index: the columns stored beside the key

    def describe(self) -> str:
        include = f" INCLUDE ({self.include})" if self.include else ""
        return f"{self.name} on {self.table} ({self.column}){include}"

    def create_sql(self) -> str:
        include = f" INCLUDE ({self.include})" if self.include else ""
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} "
            f"({self.column}){include}{where}"
        )


def source_index_definitions(revision: str | None = "head") -> list[SourceIndex]:
    """Every kpictl_* source index the revisions up to `revision` build (SOURCE_INDEXES of
    each revision file: (name, table, column[, predicate[, include]])) and none of them has
    dropped since (DROPPED_SOURCE_INDEXES: names)."""
    if revision is None:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    found: dict[str, SourceIndex] = {}
    for script_revision in reversed(list(script.iterate_revisions(revision, "base"))):
        for name in getattr(script_revision.module, "DROPPED_SOURCE_INDEXES", ()):
            found.pop(name, None)
        for definition in getattr(script_revision.module, "SOURCE_INDEXES", ()):
            index = SourceIndex(*definition)
            found[index.name] = index
    return list(found.values())


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
