"""The schema gate: a command that reads or writes kpictl's tables first makes sure the database
is at this kpictl's head revision, before it takes a lock or writes a job row (adoption.md).

At head it costs one query: the version table's revision, compared with the head the revision
files name (`kpictl.db.revisions`, no Alembic import). Otherwise Alembic is asked, only to say
what to run, in one line:

- no kpictl revision, no `kpi_snapshots`: not migrated, run `kpictl migrate`;
- no kpictl revision, the AFU-9 platform's `kpi_snapshots`: run `kpictl migrate --adopt`;
- an older revision: run `kpictl migrate`;
- a revision this kpictl does not ship (a newer kpictl migrated the database): upgrade kpictl.

`kpictl/cli/database.py` runs it for every command that opens its database; `migrate`,
`doctor` and `demo`, which handle an unmigrated database themselves, use `schema_problem` and
`refuse_unknown_revision`.
"""

from __future__ import annotations

from sqlalchemy import Connection, column, select, table
from sqlalchemy.exc import DBAPIError

from kpictl.db.revisions import VERSION_TABLE, head_from_files
from kpictl.errors import SchemaNotReady

_UNDEFINED_TABLE = "42P01"  # SQLSTATE undefined_table
_version_table = table(VERSION_TABLE, column("version_num"))


def check_schema(connection: Connection) -> None:
    """Raise SchemaNotReady unless the database is at this kpictl's head revision."""
    problem = schema_problem(connection)
    if problem is not None:
        raise problem


def schema_problem(connection: Connection) -> SchemaNotReady | None:
    """Why this database is not at head (the error to raise), or None when it is.

    Call it on a connection outside any transaction of the caller's: when the version table
    does not exist, the failed query's transaction is rolled back."""
    recorded = recorded_revisions(connection)
    if recorded == [head_from_files()]:
        return None
    return _diagnose(connection, recorded)


def recorded_revisions(connection: Connection) -> list[str]:
    """The revisions in kpictl's version table; [] when it is missing or empty."""
    try:
        return list(connection.execute(select(_version_table.c.version_num)).scalars())
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_TABLE:
            raise
        connection.rollback()
        return []


def refuse_unknown_revision(current: str | None) -> None:
    """Raise SchemaNotReady when the database names a revision this kpictl does not ship: a
    newer kpictl migrated it, and nothing here can read, upgrade or downgrade it."""
    from kpictl.services import migrate  # Alembic, only off the happy path

    if current is not None and current not in migrate.known_revisions():
        raise SchemaNotReady(
            f"database is at revision {current}, this kpictl knows up to "
            f"{migrate.head_revision()}: upgrade kpictl"
        )


def _diagnose(connection: Connection, recorded: list[str]) -> SchemaNotReady | None:
    from kpictl.services import adopt, migrate  # Alembic, only off the happy path

    head = migrate.head_revision()
    try:
        for revision in recorded:
            refuse_unknown_revision(revision)
    except SchemaNotReady as newer:
        return newer
    if recorded == [head]:  # the files and Alembic disagree: Alembic decides
        return None
    if recorded:
        return SchemaNotReady(
            f"database is at revision {', '.join(recorded)}, this kpictl needs {head}: "
            "run `kpictl migrate`"
        )
    if adopt.needs_adoption(connection):
        return SchemaNotReady(
            "AFU-9 tables found, not adopted: run `kpictl migrate --adopt` "
            "(back up first; see docs/OPERATIONS.md, 'Adopting an AFU-9 database')"
        )
    return SchemaNotReady(
        f"database not migrated: run `kpictl migrate` (this kpictl needs revision {head})"
    )
