"""Schema migrations through Alembic's Python API, on the caller's connection.

kpictl's own tables are Alembic revisions. The platform's source tables are not: they belong to
the platform, so `--with-sources` creates them (only when absent) in a separate step before the
revisions run, and no downgrade ever drops them.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.schema import CreateTable

from alembic import command
from kpictl.db.revisions import VERSION_TABLE, script_location  # kept importable from here
from kpictl.db.schema import HISTORY_SOURCES, PIPELINE_SOURCES, source_metadata
from kpictl.errors import CommandFailed, UsageError
from kpictl.services import lock as locks
from kpictl.services.schema_gate import refuse_unknown_revision

log = logging.getLogger(__name__)

# pg_advisory_lock key: two `kpictl migrate` at once run one after the other.
MIGRATE_LOCK_KEY = locks.MIGRATE.key


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


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    pending: list[str]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(connection: Connection) -> MigrationStatus:
    current = current_revision(connection)
    refuse_unknown_revision(current)
    script = ScriptDirectory.from_config(alembic_config())
    pending = [rev.revision for rev in script.iterate_revisions("head", current or "base")]
    if current is None:
        pending = [rev.revision for rev in script.iterate_revisions("head", "base")]
    return MigrationStatus(current, head_revision(), list(reversed(pending)))


def missing_tables(connection: Connection, names: tuple[str, ...]) -> list[str]:
    present = set(inspect(connection).get_table_names())
    return [name for name in names if name not in present]


def create_sources(connection: Connection) -> list[str]:
    """Create the source tables that do not exist yet; return their names. Never alters any."""
    created = missing_tables(connection, PIPELINE_SOURCES + HISTORY_SOURCES)
    tables = [source_metadata.tables[name] for name in created]
    source_metadata.create_all(connection, tables=tables, checkfirst=True)
    return created


@dataclass(frozen=True)
class MigrationResult:
    before: str | None
    after: str | None
    sources_created: list[str]
    history_sources_missing: list[str]


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Engine]:
    """Two `kpictl migrate` at once run one after the other; yields `engine` guarded so that
    every commit of the migration first checks the lock is still held (`lock.HeldLock.guard`).

    The job lock's session-level advisory lock, polled in autocommit: a session blocked inside
    pg_advisory_lock() holds a snapshot, and `CREATE INDEX CONCURRENTLY` in a revision would wait
    for it while it waits for us (a deadlock).
    """
    with locks.hold(
        engine,
        locks.MIGRATE,
        wait_seconds=math.inf,
        on_wait=lambda: log.info("Waiting for another kpictl migrate to finish"),
    ) as held:
        yield held.guard(engine)


def upgrade(
    engine: Engine, revision: str = "head", *, with_sources: bool = False
) -> MigrationResult:
    """Bring kpictl's schema to `revision`, one transaction per revision.

    Alembic owns the transactions (some revisions build indexes CONCURRENTLY, outside any
    transaction), so this takes the engine, not a connection inside a transaction.
    """
    known_revision(revision)
    with _migration_lock(engine) as guarded, guarded.connect() as connection:
        return _upgrade_locked(connection, revision, with_sources=with_sources)


def _upgrade_locked(
    connection: Connection, revision: str, *, with_sources: bool
) -> MigrationResult:
    """The body of `upgrade`, while this process holds the migrate lock."""
    # --- adoption hook (adoption.md, kpictl/services/adopt.py) ---
    from kpictl.services import adopt as adoption

    with connection.begin():
        refuse_unknown_revision(current_revision(connection))  # migrated by a newer kpictl
        if adoption.needs_adoption(connection):
            raise adoption.adoption_required_error(adoption.pending_adoption(connection) or [])
        adopted = adoption.is_adopted(connection)
    if adopted:
        adoption.ensure_source_indexes(connection)  # converges if a run died after its commit
    # --- end of adoption hook ---
    with connection.begin():
        created = create_sources(connection) if with_sources else []
        missing = missing_tables(connection, PIPELINE_SOURCES)
    if missing:
        raise CommandFailed(
            f"source tables missing: {', '.join(missing)}",
            hint="run `kpictl migrate --with-sources` to create them for a standalone or demo "
            "database, or point kpictl at the platform's database",
        )
    before = current_revision(connection)
    connection.commit()
    command.upgrade(alembic_config(connection), revision)
    connection.commit()
    return MigrationResult(
        before,
        current_revision(connection),
        created,
        missing_tables(connection, HISTORY_SOURCES),
    )


def downgrade(engine: Engine, revision: str) -> MigrationResult:
    """Downgrade kpictl's schema; source tables are never dropped."""
    known_revision(revision)
    with _migration_lock(engine) as guarded, guarded.connect() as connection:
        from kpictl.services import adopt as adoption

        refuse_unknown_revision(current_revision(connection))  # migrated by a newer kpictl
        adoption.refuse_downgrade(connection, revision)  # adoption is one-way (adoption.md)
        before = current_revision(connection)
        connection.commit()
        command.downgrade(alembic_config(connection), revision)
        connection.commit()
        return MigrationResult(before, current_revision(connection), [], [])


# --- adoption of an AFU-9 database (adoption.md; the work is in kpictl/services/adopt.py) ---


@dataclass(frozen=True)
class AdoptAndMigrateResult:
    adoption: object  # adopt.AdoptionResult
    migration: MigrationResult


def adopt(
    engine: Engine,
    *,
    source_timezone: str = "UTC",
    metadata: dict | None = None,
    fail_after: str | None = None,
    with_sources: bool = False,
) -> AdoptAndMigrateResult:
    """`migrate --adopt`: adopt the AFU-9 tables in one transaction (a no-op when there is
    nothing to adopt), then build the source indexes and upgrade to head as usual."""
    from kpictl.services import adopt as adoption

    with _migration_lock(engine) as guarded, guarded.connect() as connection:
        adopted = adoption.adopt(
            connection, source_timezone=source_timezone, metadata=metadata, fail_after=fail_after
        )
        return AdoptAndMigrateResult(
            adopted, _upgrade_locked(connection, "head", with_sources=with_sources)
        )


def adoption_sql(
    engine: Engine, *, source_timezone: str = "UTC", metadata: dict | None = None
) -> str:
    """`migrate --adopt --sql`: the adoption's SQL from a read-only look, then the later
    revisions' SQL as `migrate --sql` prints it."""
    from kpictl.services import adopt as adoption

    with engine.connect() as connection:
        text_sql = adoption.adoption_sql(
            connection, source_timezone=source_timezone, metadata=metadata
        )
    if text_sql.startswith("-- kpictl: nothing to adopt"):
        return text_sql
    buffer = io.StringIO()
    command.upgrade(alembic_config(output=buffer), f"{adoption.ADOPTED_REVISION}:head", sql=True)
    return text_sql + "\n-- then the later revisions:\n" + buffer.getvalue()


# --- end of adoption ---


def offline_sql(
    revision: str = "head", *, with_sources: bool = False, downgrade_from: str | None = None
) -> str:
    """The SQL a DBA would run, produced without any database."""
    known_revision(revision)
    buffer = io.StringIO()
    config = alembic_config(output=buffer)
    if downgrade_from is not None:
        known_revision(downgrade_from)
        command.downgrade(config, f"{downgrade_from}:{revision}", sql=True)
        return buffer.getvalue()
    if with_sources:
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()
        buffer.write("-- Source tables (created only when absent)\n\n")
        for table in source_metadata.sorted_tables:
            ddl = CreateTable(table, if_not_exists=True).compile(dialect=dialect)
            buffer.write(f"{str(ddl).strip()};\n\n")
    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()
