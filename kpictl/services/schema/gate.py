"""The schema gate: a command that reads or writes kpictl's tables first makes sure the database
is at this kpictl's head revision, before it takes a lock or writes a job row (docs/spec/adoption.md).

At head it costs one query: the version table's revision, compared with the head the revision
files name (`kpictl.db.revisions`, no Alembic import). Otherwise Alembic is asked, only to say
what to run, in one line:

- no kpictl revision, no `kpi_snapshots`: not migrated, run `kpictl migrate`;
- no kpictl revision, the AFU-9 platform's `kpi_snapshots`: run `kpictl migrate --adopt`;
- an older revision: run `kpictl migrate`;
- a revision this kpictl does not ship (a newer kpictl migrated the database): upgrade kpictl.

`kpictl/cli/database.py` runs it for every command that opens its database, except those that
handle an unmigrated database themselves: `doctor` reports `schema_problem`, `migrate` (and
`demo`, which migrates first) calls `refuse_unknown_revision`.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, column, select, table
from sqlalchemy.exc import DBAPIError

from kpictl.db.revisions import VERSION_TABLE, head_from_files
from kpictl.errors import SchemaNotReady

log = logging.getLogger(__name__)

_UNDEFINED_TABLE = "42P01"  # SQLSTATE undefined_table
_INSUFFICIENT_PRIVILEGE = "42501"
_version_table = table(VERSION_TABLE, column("version_num"))


def check_schema(connection: Connection) -> None:
    """Raise SchemaNotReady unless the database is at this kpictl's head revision."""
    problem = schema_problem(connection, unreadable_passes=True)
    if problem is not None:
        raise problem


def schema_problem(
    connection: Connection, *, unreadable_passes: bool = False
) -> SchemaNotReady | None:
    """Why this database is not at head (the error to raise), or None when it is.

    A role granted only what its command needs (docs/SECURITY.md) may not read the version
    table. The table exists then (PostgreSQL looks for it before checking privileges), so
    kpictl did migrate this database; with `unreadable_passes` the gate lets the command run,
    otherwise the permission error propagates.

    Call it on a connection outside any transaction of the caller's: when the version table
    cannot be read, the failed query's transaction is rolled back."""
    try:
        recorded = list(connection.execute(select(_version_table.c.version_num)).scalars())
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == _INSUFFICIENT_PRIVILEGE and unreadable_passes:
            connection.rollback()
            log.debug("schema gate: this role may not read %s; not checked", VERSION_TABLE)
            return None
        if sqlstate != _UNDEFINED_TABLE:
            raise
        connection.rollback()
        recorded = []
    if recorded == [head_from_files()]:
        return None
    return _diagnose(connection, recorded)


def refuse_unknown_revision(current: str | None) -> None:
    """Raise SchemaNotReady when the database names a revision this kpictl does not ship: a
    newer kpictl migrated it, and nothing here can read, upgrade or downgrade it."""
    from kpictl.db import migrations  # Alembic, only off the happy path

    if current is not None and current not in migrations.known_revisions():
        raise SchemaNotReady(
            f"database is at revision {current}, this kpictl knows up to "
            f"{migrations.head_revision()}: upgrade kpictl"
        )


def _diagnose(connection: Connection, recorded: list[str]) -> SchemaNotReady | None:
    from kpictl.db import migrations  # Alembic, only off the happy path
    from kpictl.services.adoption import detect

    head = migrations.head_revision()
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
    if detect.needs_adoption(connection):
        return SchemaNotReady(
            "AFU-9 tables found, not adopted: run `kpictl migrate --adopt` "
            "(back up first; see docs/OPERATIONS.md, 'Adopting an AFU-9 database')"
        )
    return SchemaNotReady(
        f"database not migrated: run `kpictl migrate` (this kpictl needs revision {head})"
    )
