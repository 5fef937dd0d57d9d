"""The partitions of `kpi_snapshots` (revision 0008): LIST by level, then RANGE by `period_end`.

    kpi_snapshots                      PARTITION BY LIST (level)
      kpi_snapshots_run                  FOR VALUES IN ('run')      PARTITION BY RANGE (period_end)
        kpi_snapshots_run_20260105         one UTC day each
        kpi_snapshots_run_default          anything no day partition holds
      kpi_snapshots_product              FOR VALUES IN ('product')  PARTITION BY RANGE (period_end)
        kpi_snapshots_product_202601       one UTC month each
        kpi_snapshots_product_default
      kpi_snapshots_factory              (as product)

Run rows are three per run, so a busy platform adds millions a day: a day per partition lets
retention drop a whole day at once (docs/SCALING.md); product and factory rows are a few
thousand a day and live in months. Every row has a place: a row outside the partitions made so
far goes to its level's default partition (`doctor` warns when one holds rows), and a
partition made later takes the default's rows of its range over (`ensure`).

Partitions are made ahead of need (`ensure`, by aggregate, backfill and retention) and made
the cheap way: a plain table, then `ATTACH PARTITION`, which takes a SHARE UPDATE EXCLUSIVE lock
on the parent (readers and writers go on), not the ACCESS EXCLUSIVE of `CREATE TABLE ...
PARTITION OF`. One maker at a time: `pg_advisory_xact_lock(MAINTENANCE_KEY)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text

TABLE = "kpi_snapshots"
LEVELS = ("run", "product", "factory")
GRAIN = {"run": "day", "product": "month", "factory": "month"}
AHEAD = {"day": timedelta(days=7), "month": timedelta(days=62)}  # made before they are needed
MAINTENANCE_KEY = 0x6B70_6963_7061_7274  # "kpicpart": pg_advisory_xact_lock while making them


@dataclass(frozen=True)
class Partition:
    level: str
    start: datetime  # inclusive, UTC midnight
    end: datetime  # exclusive

    @property
    def name(self) -> str:
        suffix = self.start.strftime("%Y%m%d" if GRAIN[self.level] == "day" else "%Y%m")
        return f"{TABLE}_{self.level}_{suffix}"

    @property
    def bounds_sql(self) -> str:
        return f"FOR VALUES FROM ('{self.start.isoformat()}') TO ('{self.end.isoformat()}')"


def level_table(level: str) -> str:
    return f"{TABLE}_{level}"


def default_partition(level: str) -> str:
    return f"{TABLE}_{level}_default"


def containing(level: str, instant: datetime) -> Partition:
    """The partition of `level` whose range holds `instant`."""
    moment = instant.astimezone(UTC)
    if GRAIN[level] == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return Partition(level, start, start + timedelta(days=1))
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return Partition(level, start, following)


def covering(level: str, start: datetime, end: datetime) -> list[Partition]:
    """The partitions of `level` whose ranges meet [start, end], in order."""
    found = [containing(level, start)]
    while found[-1].end <= end:
        found.append(containing(level, found[-1].end))
    return found


# --- the parent and its level tables (revision 0008) -----------------------------------------


def parent_statements(parent: str, like: str) -> list[str]:
    """A partitioned copy of table `like` named `parent` (its columns, defaults, CHECKs and
    comments), its three level tables and their default partitions. Keys and indexes are the
    caller's: their names must not clash with `like`'s while both exist."""
    statements = [
        f"CREATE TABLE {parent} (LIKE {like} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING COMMENTS INCLUDING STORAGE) PARTITION BY LIST (level)"
    ]
    for level in LEVELS:
        statements.append(
            f"CREATE TABLE {level_table(level)} PARTITION OF {parent} FOR VALUES IN ('{level}') "
            "PARTITION BY RANGE (period_end)"
        )
        statements.append(
            f"CREATE TABLE {default_partition(level)} PARTITION OF {level_table(level)} DEFAULT"
        )
    return statements


# --- making partitions ahead of need ----------------------------------------------------------

EXISTING = text(
    """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(:level_table)
"""
)


def is_partitioned(connection: Connection) -> bool:
    kind = connection.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:table)"), {"table": TABLE}
    ).scalar()
    return kind == "p"


def ensure(connection: Connection, level: str, start: datetime, end: datetime) -> list[str]:
    """Make the partitions of `level` that [start, end] needs and that do not exist yet, in the
    caller's transaction; returns their names. Rows of their ranges that went to the default
    partition meanwhile move into them. Nothing to do before the table is partitioned (its
    level tables exist from revision 0008's first step on)."""
    exists = connection.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": level_table(level)}
    ).scalar_one()
    if not exists:
        return []
    wanted = covering(level, start, end)
    existing = set(connection.execute(EXISTING, {"level_table": level_table(level)}).scalars())
    missing = [partition for partition in wanted if partition.name not in existing]
    if not missing:
        return []
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MAINTENANCE_KEY})
    existing = set(connection.execute(EXISTING, {"level_table": level_table(level)}).scalars())
    made = []
    for partition in missing:
        if partition.name not in existing:
            _attach(connection, partition)
            made.append(partition.name)
    return made


def _attach(connection: Connection, partition: Partition) -> None:
    """A plain table like the level table, the default's rows of its range moved in, attached."""
    name, default = partition.name, default_partition(partition.level)
    in_range = f"period_end >= '{partition.start.isoformat()}' AND period_end < '{partition.end.isoformat()}'"
    connection.execute(
        text(
            f"CREATE TABLE {name} (LIKE {level_table(partition.level)} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING STORAGE)"
        )
    )
    # the CHECK lets ATTACH skip its scan of the new table; dropped once attached
    connection.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds CHECK ({in_range} AND level = '{partition.level}')"
        )
    )
    moved = connection.execute(
        text(
            f"WITH moved AS (DELETE FROM {default} WHERE {in_range} RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        )
    )
    del moved
    connection.execute(
        text(
            f"ALTER TABLE {level_table(partition.level)} ATTACH PARTITION {name} {partition.bounds_sql}"
        )
    )
    connection.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"))


def ensure_around(connection: Connection, start: datetime, end: datetime, now: datetime) -> None:
    """Every level's partitions for [start, end] (a backfill's range may be long past) and for
    the days or months from `now` to AHEAD of it; not those between the two."""
    for level in LEVELS:
        ensure(connection, level, start, end)
        ensure(connection, level, now, now + AHEAD[GRAIN[level]])


# --- retention: whole partitions --------------------------------------------------------------

LEAVES = text(
    """
SELECT c.relname AS name, c.reltuples::bigint AS estimated_rows,
       pg_get_expr(c.relpartbound, c.oid) AS bounds
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(:level_table)
ORDER BY c.relname
"""
)


@dataclass(frozen=True)
class Expired:
    name: str
    rows: (
        int  # the planner's estimate (pg_class.reltuples): counting would cost what dropping saves
    )


def expired(connection: Connection, level: str, cutoff: datetime) -> list[Expired]:
    """The partitions of `level` retention may drop whole: those that start before `cutoff` and
    whose rows were all calculated before it (their newest `calculated_at`: one index probe
    each, all in one statement), or that are empty and end by `cutoff`. Never the default."""
    candidates = [
        row
        for row in connection.execute(LEAVES, {"level_table": level_table(level)})
        if row.name != default_partition(level) and _bound(row.bounds, " FROM ('") < cutoff
    ]
    if not candidates:
        return []
    probes = " UNION ALL ".join(
        f"SELECT {index} AS n, (SELECT max(calculated_at) FROM {row.name}) AS newest"
        for index, row in enumerate(candidates)
    )
    newest: dict[int, datetime | None] = {
        row.n: row.newest for row in connection.execute(text(probes))
    }
    found = []
    for index, row in enumerate(candidates):
        last = newest[index]
        if (last is None and _bound(row.bounds, " TO ('") <= cutoff) or (
            last is not None and last < cutoff
        ):
            found.append(Expired(row.name, max(int(row.estimated_rows), 0)))
    return found


def _bound(bounds: str, marker: str) -> datetime:
    """The FROM or TO bound of `FOR VALUES FROM ('...') TO ('...')`."""
    return datetime.fromisoformat(bounds.split(marker, 1)[1].split("'", 1)[0])


def drop(connection: Connection, names: list[str]) -> None:
    """Drop expired partitions, in one statement (their rows go without a WAL record each)."""
    for name in names:
        if not name.startswith(f"{TABLE}_") or name.endswith("_default"):
            raise ValueError(f"not a partition retention may drop: {name!r}")
    if names:
        connection.execute(text(f"DROP TABLE {', '.join(names)}"))


def rows_in_defaults(connection: Connection) -> dict[str, int]:
    """Rows per level in the default partitions (doctor warns about them)."""
    counts = {}
    for level in LEVELS:
        if connection.execute(
            text("SELECT to_regclass(:n)"), {"n": default_partition(level)}
        ).scalar():
            counts[level] = connection.execute(
                text(f"SELECT count(*) FROM {default_partition(level)}")
            ).scalar_one()
    return counts
