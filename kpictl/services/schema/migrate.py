"""Schema migrations through Alembic's Python API, on the caller's connection.

kpictl's own tables are Alembic revisions. The platform's source tables are not: they belong to
the platform, so `--with-sources` creates them (only when absent) in a separate step before the
revisions run, and no downgrade ever drops them.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import AddConstraint, CreateTable

from alembic import command
from kpictl.db import kpi_views
from kpictl.db.migrations import (
    SourceIndex,
    alembic_config,
    current_revision,
    head_revision,
    known_revision,
    source_index_definitions,
)
from kpictl.db.schema import (
    HISTORY_SOURCES,
    PIPELINE_SOURCES,
    kpi_snapshots,
    source_metadata,
)
from kpictl.errors import CommandFailed, UsageError
from kpictl.services.jobs import lock as locks
from kpictl.services.schema.gate import refuse_unknown_revision

if TYPE_CHECKING:
    from kpictl.services.adoption.steps import AdoptionResult

log = logging.getLogger(__name__)


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
    # at head: what `migrate` found broken and put back (doctor's checks of the same things)
    repaired: list[str] = field(default_factory=list)
    indexes_rebuilt: list[str] = field(default_factory=list)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Engine]:
    """Two `kpictl migrate` (upgrade, downgrade, adopt) at once run one after the other;
    yields `engine` guarded so that every commit of the migration, the adoption's included,
    first checks the lock is still held (`lock.HeldLock.guard`).

    `lock.MIGRATE`, taken, fenced and released by `lock.hold` like every job's lock (it writes no
    job row, so it marks none abandoned): polled in autocommit, because a session blocked inside
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
    # --- adoption hook (docs/spec/adoption.md, kpictl/services/adoption/) ---
    from kpictl.services.adoption import detect as adoption_detect

    with connection.begin():
        refuse_unknown_revision(current_revision(connection))  # migrated by a newer kpictl
        if adoption_detect.needs_adoption(connection):
            raise adoption_detect.adoption_required_error(
                adoption_detect.pending_adoption(connection) or []
            )
    # --- end of adoption hook ---  (an adoption's source indexes: rebuild_source_indexes below)
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
    after = current_revision(connection)
    connection.commit()
    repaired = []
    if after == head_revision():
        with connection.begin():
            repaired = repair_schema(connection)
    return MigrationResult(
        before,
        after,
        created,
        missing_tables(connection, HISTORY_SOURCES),
        repaired,
        rebuild_source_indexes(connection, after),
    )


# --- what the pipeline needs at head, put back when broken (doctor checks the same) ---------

# materialized view -> (its unique index, which REFRESH ... CONCURRENTLY needs; the index SQL)
VIEW_INDEXES = kpi_views.UNIQUE_INDEXES
SNAPSHOT_KEY = "uq_kpi_snapshots_key"


def _head_module_with(attribute: str) -> Any:
    """The newest revision file that defines `attribute` (the SQL in force at head)."""
    script = ScriptDirectory.from_config(alembic_config())
    for script_revision in script.iterate_revisions("head", "base"):
        if hasattr(script_revision.module, attribute):
            return script_revision.module
    raise CommandFailed(f"no revision defines {attribute}")  # a packaging error


def history_policies() -> dict[str, str]:
    """Name -> CREATE POLICY of the policies kpi_history has at head."""
    return dict(_head_module_with("POLICIES").POLICIES)


def _exists(connection: Connection, name: str) -> bool:
    return (
        connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None
    )


def repair_schema(connection: Connection) -> list[str]:
    """At head: recreate a missing materialized view (or its unique index), the snapshot key,
    kpi_history's row-level security (enabled, forced, its policies). Returns what was done."""
    done = []
    # the views' current definition (the newest revision that creates them ships the same SQL)
    for view, create in kpi_views.VIEWS.items():
        if not _exists(connection, view):
            connection.exec_driver_sql(create)
            done.append(f"recreated materialized view {view}")
        index, create_index = VIEW_INDEXES[view]
        if not _exists(connection, index):
            connection.exec_driver_sql(create_index)
            done.append(f"recreated unique index {index} of {view}")
    has_key = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = :name "
            "AND conrelid = 'kpi_snapshots'::regclass)"
        ),
        {"name": SNAPSHOT_KEY},
    ).scalar_one()
    if not has_key:
        key = next(c for c in kpi_snapshots.constraints if c.name == SNAPSHOT_KEY)
        try:
            with connection.begin_nested():
                connection.execute(AddConstraint(key))
        except IntegrityError:
            raise CommandFailed(
                f"cannot restore the unique key {SNAPSHOT_KEY}: kpi_snapshots holds duplicate "
                "rows of one (level, kpi_name, kpi_version, period_end, scope_id, period_start)",
                hint="delete the older duplicates (keep the newest calculated_at), then run "
                "`kpictl migrate` again",
            ) from None
        done.append(f"restored the unique key {SNAPSHOT_KEY} of kpi_snapshots")
    done += _repair_history_security(connection)
    return done


def _repair_history_security(connection: Connection) -> list[str]:
    done = []
    enabled, forced = connection.execute(
        text(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'kpi_history'::regclass"
        )
    ).one()
    if not enabled:
        connection.exec_driver_sql("ALTER TABLE kpi_history ENABLE ROW LEVEL SECURITY")
        done.append("enabled row-level security on kpi_history")
    if not forced:
        connection.exec_driver_sql("ALTER TABLE kpi_history FORCE ROW LEVEL SECURITY")
        done.append("forced row-level security on kpi_history (FORCE ROW LEVEL SECURITY)")
    present = set(
        connection.execute(
            text("SELECT polname FROM pg_policy WHERE polrelid = 'kpi_history'::regclass")
        ).scalars()
    )
    for name, create in history_policies().items():
        if name not in present:
            connection.exec_driver_sql(create)
            done.append(f"recreated the policy {name} on kpi_history")
    return done


def invalid_or_missing_indexes(
    connection: Connection, revision: str | None = "head"
) -> list[tuple[SourceIndex, str]]:
    """The kpictl_* source indexes of the revisions up to `revision` that are missing or
    INVALID (an interrupted CREATE INDEX CONCURRENTLY), with "missing" or "invalid"."""
    expected = source_index_definitions(revision)
    rows = connection.execute(
        text(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = ANY(:names) AND c.relnamespace = current_schema()::regnamespace"
        ),
        {"names": [index.name for index in expected]},
    ).all()
    valid = {name: is_valid for name, is_valid in rows}
    return [
        (index, "invalid" if index.name in valid else "missing")
        for index in expected
        if not valid.get(index.name)
    ]


def rebuild_source_indexes(connection: Connection, revision: str | None) -> list[str]:
    """Build the missing or INVALID kpictl_* source indexes of the applied revisions,
    CONCURRENTLY (outside any transaction, without blocking the platform's writes); an invalid
    one is dropped CONCURRENTLY first. Returns one line per index built."""
    connection.commit()
    broken = invalid_or_missing_indexes(connection, revision)
    connection.commit()
    if not broken:
        return []
    built = []
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        for index, state in broken:
            if state == "invalid":
                connection.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
            log.info("Building index %s concurrently (was %s)", index.describe(), state)
            connection.exec_driver_sql(index.create_sql())
            built.append(f"{index.describe()} (was {state})")
    finally:
        connection.commit()
        connection.execution_options(isolation_level=connection.default_isolation_level)
    return built


@dataclass(frozen=True)
class DowngradePlan:
    """What `migrate --downgrade` would drop: kpictl's tables, with their row counts."""

    before: str | None
    target: str
    tables: list[tuple[str, int]]

    @property
    def holds_rows(self) -> bool:
        return any(rows for _name, rows in self.tables)

    def describe(self) -> str:
        return (
            ", ".join(
                f"{name} ({rows:,} row{'' if rows == 1 else 's'})" for name, rows in self.tables
            )
            or "no tables"
        )


_DROP_TABLE = re.compile(r"^DROP TABLE (?:IF EXISTS )?(\w+)", re.MULTILINE)


def downgrade_plan(connection: Connection, revision: str) -> DowngradePlan:
    """The tables a downgrade from the current revision to `revision` drops (read from the SQL
    the revisions print offline, so a new revision needs no list here), and their rows now."""
    before = current_revision(connection)
    if before is None or revision == before:
        return DowngradePlan(before, revision, [])
    dropped = _DROP_TABLE.findall(offline_sql(revision, downgrade_from=before))
    present = [name for name in dropped if _exists(connection, name)]
    return DowngradePlan(
        before, revision, [(name, _exact_rows(connection, name)) for name in present]
    )


def _exact_rows(connection: Connection, table: str) -> int:
    """count(*) of one of kpictl's tables, all tenants included: a forced row-level security
    policy would show the owner nothing, so it is lifted inside a transaction rolled back at
    once (the downgrade needs the owner's rights anyway)."""
    forced = connection.execute(
        text("SELECT relforcerowsecurity FROM pg_class WHERE oid = to_regclass(:name)"),
        {"name": table},
    ).scalar()
    with connection.begin_nested() as savepoint:
        if forced:
            connection.exec_driver_sql(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        rows = int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
        savepoint.rollback()
    return rows


def downgrade(
    engine: Engine, revision: str, *, confirm: Callable[[DowngradePlan], bool] | None = None
) -> MigrationResult:
    """Downgrade kpictl's schema; source tables are never dropped.

    Holds every job lock (pipeline, retention, history fill; LockHeld, exit 75, when one is
    held) so that no job writes while its tables go. A downgrade that would drop tables holding
    rows goes ahead only when `confirm(plan)` says yes; otherwise nothing is changed."""
    known_revision(revision)
    with _migration_lock(engine) as guarded, guarded.connect() as connection:
        from kpictl.services.adoption import detect as adoption_detect

        refuse_unknown_revision(current_revision(connection))  # migrated by a newer kpictl
        adoption_detect.refuse_downgrade(
            connection, revision
        )  # adoption is one-way (docs/spec/adoption.md)
        before = current_revision(connection)
        connection.commit()
        with ExitStack() as job_locks:
            if before is not None:  # kpi_aggregation_jobs exists: the locks' job rows
                for lock in (locks.PIPELINE, locks.RETENTION, locks.HISTORY_FILL):
                    job_locks.enter_context(locks.hold(engine, lock))
            plan = downgrade_plan(connection, revision)
            connection.commit()
            if plan.holds_rows and (confirm is None or not confirm(plan)):
                raise CommandFailed(
                    f"refusing to downgrade {before} -> {revision} without confirmation: it "
                    f"drops {plan.describe()}; nothing was changed",
                    hint="back up first (pg_dump), then run again with --yes",
                )
            command.downgrade(alembic_config(connection), revision)
            connection.commit()
            return MigrationResult(before, current_revision(connection), [], [])


# --- adoption of an AFU-9 database (docs/spec/adoption.md; the work is in kpictl/services/adoption/) ---


@dataclass(frozen=True)
class AdoptAndMigrateResult:
    adoption: AdoptionResult
    migration: MigrationResult


def adopt(
    engine: Engine,
    *,
    source_timezone: str = "UTC",
    metadata: dict[str, Any] | None = None,
    with_sources: bool = False,
) -> AdoptAndMigrateResult:
    """`migrate --adopt`: adopt the AFU-9 tables in one transaction (a no-op when there is
    nothing to adopt), then build the source indexes and upgrade to head as usual."""
    from kpictl.services.adoption import run as adoption_run

    with _migration_lock(engine) as guarded, guarded.connect() as connection:
        adopted = adoption_run.adopt(connection, source_timezone=source_timezone, metadata=metadata)
        return AdoptAndMigrateResult(
            adopted, _upgrade_locked(connection, "head", with_sources=with_sources)
        )


def adoption_sql(
    engine: Engine, *, source_timezone: str = "UTC", metadata: dict[str, Any] | None = None
) -> str:
    """`migrate --adopt --sql`: the adoption's SQL from a read-only look, then the later
    revisions' SQL as `migrate --sql` prints it."""
    from kpictl.services.adoption import run as adoption_run
    from kpictl.services.adoption import steps as adoption_steps

    with engine.connect() as connection:
        text_sql = adoption_run.adoption_sql(
            connection, source_timezone=source_timezone, metadata=metadata
        )
    if text_sql.startswith("-- kpictl: nothing to adopt"):
        return text_sql
    buffer = io.StringIO()
    command.upgrade(
        alembic_config(output=buffer), f"{adoption_steps.ADOPTED_REVISION}:head", sql=True
    )
    return text_sql + "\n-- then the later revisions:\n" + buffer.getvalue()


# --- end of adoption ---


def revision_order() -> list[str]:
    """kpictl's revisions, newest first."""
    return [rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()]


def offline_sql(
    revision: str = "head",
    *,
    with_sources: bool = False,
    downgrade_from: str | None = None,
    upgrade_from: str | None = None,
) -> str:
    """The SQL a DBA would run, produced without any database: from an empty schema, or from
    `upgrade_from` (a database at that revision: only the later revisions' SQL)."""
    known_revision(revision)
    buffer = io.StringIO()
    config = alembic_config(output=buffer)
    if upgrade_from is not None:
        known_revision(upgrade_from)
        if with_sources:
            raise UsageError(
                "--with-sources creates source tables in an empty schema: not with --from"
            )
        order = ["base", *reversed(revision_order())]
        position = {name: order.index(name) for name in order} | {"head": len(order) - 1}
        if position[revision] < position[upgrade_from]:
            raise UsageError(
                f"--from {upgrade_from} is after {revision}: nothing to upgrade "
                "(the SQL of a downgrade: `kpictl migrate --downgrade REV --sql`)"
            )
        if position[revision] == position[upgrade_from]:
            return ""  # already there: no statement
        command.upgrade(config, f"{upgrade_from}:{revision}", sql=True)
        return buffer.getvalue()
    if downgrade_from is not None:
        known_revision(downgrade_from)
        command.downgrade(config, f"{downgrade_from}:{revision}", sql=True)
        return buffer.getvalue()
    if with_sources:
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy: unannotated
        buffer.write("-- Source tables (created only when absent)\n\n")
        for table in source_metadata.sorted_tables:
            ddl = CreateTable(table, if_not_exists=True).compile(dialect=dialect)
            buffer.write(f"{str(ddl).strip()};\n\n")
    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()
