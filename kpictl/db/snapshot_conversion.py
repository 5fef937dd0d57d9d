"""Revision 0008: `kpi_snapshots` to the partitioned table of `partitions.py` in place, on a live
database; and back to one table (downgrade).

1. `prepare` (in the revision's transaction): the new table under a temporary name with its
   partitions (those the rows need, within HISTORY of now; older or odd rows go to the default
   partitions), its keys and indexes under temporary names, and a trigger on the old table
   that mirrors every insert, update and delete into the new one from then on.
2. `copy` (autocommit, one transaction a batch): the old rows, BATCH_BLOCKS heap blocks at a
   time (a TID range scan), into the new table; a row the trigger already wrote is kept (it is
   as new or newer).
3. `swap` (one transaction): the old table is locked in SHARE mode (writers wait, readers go
   on) while the rows of each level are counted in both; counts that differ are reconciled
   (rows missing copied, rows deleted meanwhile removed) and counted again, and a difference
   left stops the revision (nothing changed). Then, under ACCESS EXCLUSIVE for the renames
   only: the views over the table are saved and dropped, the old table dropped, the new one
   renamed with its constraints and indexes, given the old one's owner, grants and comment,
   and the views recreated as they were.

kpictl's own writers are stopped while `migrate` runs (it holds the job locks); the mirror is
for the platform's writers (its service and trigger insert snapshots).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from kpictl import _testing
from kpictl.db import dependent_views as saved
from kpictl.db import partitions

log = logging.getLogger(__name__)

TABLE = partitions.TABLE
NEW = f"{TABLE}_new"
KEY_COLUMNS = "level, kpi_name, kpi_version, period_end, scope_id, period_start"
BATCH_BLOCKS = 2000  # about 100k rows of kpi_snapshots a batch
HISTORY = {
    "run": timedelta(days=120),
    "product": timedelta(days=400),
    "factory": timedelta(days=800),
}
MIRROR = "kpictl_snapshots_mirror"
TEMPORARY = "_tmp_"  # the new table's constraint and index names carry it until the swap


class ConversionFailed(Exception):
    """The copy does not match the table: nothing was swapped."""


@dataclass(frozen=True)
class Shape:
    """What the table becomes: partitioned (upgrade) or one table (downgrade)."""

    partitioned: bool

    @property
    def primary_key(self) -> str:
        return "id, level, period_end" if self.partitioned else "id"


# --- 1. prepare -------------------------------------------------------------------------------


def prepare(connection: Connection, shape: Shape, now: datetime) -> None:
    """The new table, empty, with its keys, indexes and (partitioned) partitions, and the
    mirror trigger on the old table. A conversion that stopped half-way (its process or
    connection ended during the copy) is discarded first: this one starts over."""
    discard_unfinished(connection)
    if shape.partitioned:
        for statement in partitions.parent_statements(NEW, TABLE):
            connection.execute(text(statement))
    else:
        connection.execute(
            text(
                f"CREATE TABLE {NEW} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING COMMENTS INCLUDING STORAGE)"
            )
        )
    connection.execute(
        text(
            f"ALTER TABLE {NEW} ADD CONSTRAINT pk_{TABLE}{TEMPORARY} PRIMARY KEY ({shape.primary_key}), "
            f"ADD CONSTRAINT uq_{TABLE}_key{TEMPORARY} UNIQUE NULLS NOT DISTINCT ({KEY_COLUMNS})"
        )
    )
    for statement in _index_statements(connection):
        connection.execute(text(statement))
    if shape.partitioned:
        _partitions_for_the_rows(connection, now)
    connection.execute(text(MIRROR_FUNCTION))
    connection.execute(
        text(
            f"CREATE TRIGGER {MIRROR} AFTER INSERT OR UPDATE OR DELETE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {MIRROR}()"
        )
    )


def discard_unfinished(connection: Connection) -> None:
    """Drop what an interrupted conversion left (the new table with its partitions, the
    mirror trigger and function); the old table is whole and untouched."""
    left = connection.execute(
        text(
            "SELECT to_regclass(:new) IS NOT NULL "
            "OR EXISTS (SELECT 1 FROM pg_proc WHERE proname = :mirror)"
        ),
        {"new": NEW, "mirror": MIRROR},
    ).scalar_one()
    if left:
        log.warning("a conversion of %s stopped half-way is discarded: starting over", TABLE)
        connection.execute(text(f"DROP TRIGGER IF EXISTS {MIRROR} ON {TABLE}"))
        connection.execute(text(f"DROP FUNCTION IF EXISTS {MIRROR}()"))
        connection.execute(text(f"DROP TABLE IF EXISTS {NEW}"))


INDEXES = text(
    """
SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = to_regclass(:table) AND NOT x.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
ORDER BY i.relname
"""
)


def _index_statements(connection: Connection) -> list[str]:
    """The old table's other indexes (kpictl's and, on an adopted database, the platform's) on
    the new table, under temporary names. A unique index without the partition key cannot
    exist on a partitioned table: none of kpictl's or the platform's is one."""
    statements = []
    for row in connection.execute(INDEXES, {"table": TABLE}):
        definition = row.definition.replace(
            f"INDEX {row.name} ON ", f"INDEX {row.name}{TEMPORARY} ON ", 1
        )
        definition = definition.replace(f" ON public.{TABLE} ", f" ON public.{NEW} ", 1)
        definition = definition.replace(f" ON ONLY public.{TABLE} ", f" ON public.{NEW} ", 1)
        statements.append(definition)
    return statements


def _partitions_for_the_rows(connection: Connection, now: datetime) -> None:
    """Per level, the partitions from its oldest row (within HISTORY of now) to ahead of now."""
    for level in partitions.LEVELS:
        oldest = connection.execute(
            text(
                f"SELECT min(period_end) FROM {TABLE} WHERE level = :level "
                "AND period_end >= :floor AND period_end < 'infinity'"
            ),
            {"level": level, "floor": now - HISTORY[level]},
        ).scalar()
        ahead = partitions.AHEAD[partitions.GRAIN[level]]
        partitions.ensure(connection, level, oldest or now, now + ahead)


MIRROR_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {MIRROR}() RETURNS trigger LANGUAGE plpgsql AS $mirror$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    DELETE FROM {NEW} WHERE id = OLD.id AND level = OLD.level AND period_end = OLD.period_end;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {NEW} SELECT (NEW).* ON CONFLICT ON CONSTRAINT uq_{TABLE}_key{TEMPORARY}
      DO UPDATE SET value = excluded.value, unit = excluded.unit, metadata = excluded.metadata,
                    calculated_at = excluded.calculated_at, job_id = excluded.job_id;
  END IF;
  RETURN NULL;
END
$mirror$
"""


# --- 2. copy ----------------------------------------------------------------------------------


def copy(
    connection: Connection,
    *,
    batch_blocks: int = BATCH_BLOCKS,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Every row of the old table into the new one, a batch of heap blocks per statement
    (`connection` in autocommit: each batch commits). Returns the rows copied."""
    blocks = connection.execute(
        text(f"SELECT pg_relation_size('{TABLE}') / current_setting('block_size')::int")
    ).scalar_one()
    copied = 0
    for first in range(0, int(blocks) + 1, batch_blocks):
        result = connection.execute(
            text(
                f"INSERT INTO {NEW} SELECT * FROM {TABLE} "
                f"WHERE ctid >= '({first},0)'::tid AND ctid < '({first + batch_blocks},0)'::tid "
                "ON CONFLICT DO NOTHING"
            )
        )
        copied += result.rowcount
        if progress is not None:
            progress(copied)
        _testing.pause(connection, "convert")  # a test's KPICTL_DEBUG_STEP_GATE="convert"
    return copied


# --- 3. swap ----------------------------------------------------------------------------------

COUNTS = "SELECT level, count(*) FROM {table} GROUP BY level ORDER BY level"


def counts(connection: Connection, table: str) -> dict[str, int]:
    return {row[0]: row[1] for row in connection.execute(text(COUNTS.format(table=table)))}


def swap(connection: Connection, shape: Shape) -> dict[str, int]:
    """Check, then put the new table in the old one's place (see the module docstring); in the
    caller's transaction. Returns the rows per level."""
    connection.execute(text(f"LOCK TABLE {TABLE} IN SHARE MODE"))
    old, new = counts(connection, TABLE), counts(connection, NEW)
    if old != new:
        _reconcile(connection)
        old, new = counts(connection, TABLE), counts(connection, NEW)
        if old != new:
            raise ConversionFailed(
                f"rows per level differ after the copy: {old} in the table, {new} in the copy"
            )
    connection.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
    views = saved.dependent_views(connection, [TABLE])
    table_facts = _table_facts(connection)
    for view in reversed(views):
        kind = "MATERIALIZED VIEW" if view["relkind"] == "m" else "VIEW"
        connection.execute(text(f"DROP {kind} {view['name']}"))
    connection.execute(text(f"DROP TABLE {TABLE}"))
    connection.execute(text(f"DROP FUNCTION {MIRROR}()"))
    connection.execute(text(f"ALTER TABLE {NEW} RENAME TO {TABLE}"))
    for statement in _final_names(connection):
        connection.execute(text(statement))
    for statement in saved.restore_statements("TABLE", table_facts, TABLE):
        connection.execute(text(statement))
    for view in views:
        for statement in _recreate(view):
            connection.execute(text(statement))
    return old


def _reconcile(connection: Connection) -> None:
    """Rows the copy missed, copied; rows deleted from the table after their copy, removed."""
    connection.execute(
        text(
            f"INSERT INTO {NEW} SELECT o.* FROM {TABLE} o WHERE NOT EXISTS (SELECT 1 FROM {NEW} n "
            "WHERE n.id = o.id AND n.level = o.level AND n.period_end = o.period_end) "
            "ON CONFLICT DO NOTHING"
        )
    )
    connection.execute(
        text(f"DELETE FROM {NEW} n WHERE NOT EXISTS (SELECT 1 FROM {TABLE} o WHERE o.id = n.id)")
    )


def _table_facts(connection: Connection) -> dict[str, Any]:
    facts = (
        connection.execute(
            text(saved.RELATION_FACTS + " WHERE c.oid = to_regclass(:table)"), {"table": TABLE}
        )
        .mappings()
        .one()
    )
    return dict(facts)


def _final_names(connection: Connection) -> list[str]:
    """The new table's constraints and indexes renamed to the old ones' names."""
    statements = []
    constraints = connection.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:table) "
            "AND conname LIKE :pattern"
        ),
        {"table": TABLE, "pattern": f"%{TEMPORARY}"},
    ).scalars()
    for name in constraints:
        final = name.removesuffix(TEMPORARY)
        statements.append(f"ALTER TABLE {TABLE} RENAME CONSTRAINT {name} TO {final}")
    indexes = connection.execute(
        text(
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = to_regclass(:table) AND i.relname LIKE :pattern "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
        ),
        {"table": TABLE, "pattern": f"%{TEMPORARY}"},
    ).scalars()
    for name in indexes:
        statements.append(f"ALTER INDEX {name} RENAME TO {name.removesuffix(TEMPORARY)}")
    return statements


def _recreate(view: dict[str, Any]) -> Sequence[str]:
    if view["relkind"] == "v":
        return saved.create_view_statements(view)
    definition = view["definition"].strip().rstrip(";")
    create = f"CREATE MATERIALIZED VIEW {view['name']} AS\n{definition}"
    return [create, *saved.restore_statements("MATERIALIZED VIEW", view, view["name"])]


# --- migrate --sql ----------------------------------------------------------------------------

KPICTL_INDEXES = (
    "CREATE INDEX ix_{table}_latest{tmp} ON {new} (kpi_name, calculated_at) "
    "WHERE level IN ('factory', 'product')",
    "CREATE INDEX ix_{table}_calculated_at{tmp} ON {new} (calculated_at)",
    "CREATE INDEX ix_{table}_job_id{tmp} ON {new} (job_id)",
)


def offline_statements(shape: Shape) -> list[str]:
    """The conversion as one transaction, for `migrate --sql`: the new table (partitioned: with
    its default partitions only; `kpictl aggregate` makes the day and month partitions and moves
    their rows out of the defaults), every row copied, the swap. Views over the table must be
    dropped before and recreated after by the DBA: the catalog is not known offline."""
    if shape.partitioned:
        statements = partitions.parent_statements(NEW, TABLE)
    else:
        statements = [
            f"CREATE TABLE {NEW} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING COMMENTS INCLUDING STORAGE)"
        ]
    statements.append(
        f"ALTER TABLE {NEW} ADD CONSTRAINT pk_{TABLE}{TEMPORARY} PRIMARY KEY ({shape.primary_key}), "
        f"ADD CONSTRAINT uq_{TABLE}_key{TEMPORARY} UNIQUE NULLS NOT DISTINCT ({KEY_COLUMNS})"
    )
    statements += [index.format(table=TABLE, tmp=TEMPORARY, new=NEW) for index in KPICTL_INDEXES]
    statements += [
        f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE",
        f"INSERT INTO {NEW} SELECT * FROM {TABLE}",
        # the old table goes under another name: the rows live on in the new one (a downgrade's
        # plan lists the tables a revision drops by their DROP TABLE, and this one keeps its rows)
        f"ALTER TABLE {TABLE} RENAME TO {TABLE}_old",
        f"DROP TABLE {TABLE}_old",
        f"ALTER TABLE {NEW} RENAME TO {TABLE}",
        f"ALTER TABLE {TABLE} RENAME CONSTRAINT pk_{TABLE}{TEMPORARY} TO pk_{TABLE}",
        f"ALTER TABLE {TABLE} RENAME CONSTRAINT uq_{TABLE}_key{TEMPORARY} TO uq_{TABLE}_key",
    ]
    statements += [
        f"ALTER INDEX ix_{TABLE}_{name}{TEMPORARY} RENAME TO ix_{TABLE}_{name}"
        for name in ("latest", "calculated_at", "job_id")
    ]
    return statements
