"""How every command opens its database: the engine, then the schema gate.

A command that reads or writes kpictl's tables gets the gate by default: it stops, before any
lock or job row, unless the database is at this kpictl's head revision
(`kpictl/services/schema/gate.py`). Only `migrate`, `doctor` and `demo`, which deal with an
unmigrated database themselves, pass `schema_gate=False`. A test keeps every command module on
this function rather than `kpictl.db.engine.open_database`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.db.engine import Database


def open_database(settings: Settings, *, schema_gate: bool = True) -> Database:
    """The command's database (starting the embedded server if needed), checked to be at head
    unless `schema_gate` is False. A command that only reads reads from the read URL when one
    is set (`Settings.read_target`, e.g. a replica)."""
    from dataclasses import replace

    from kpictl.db import engine
    from kpictl.settings import READ_COMMANDS

    if settings.read_target is not None and settings.command in READ_COMMANDS:
        settings = replace(settings, target=settings.read_target)
    database = engine.open_database(settings)
    if schema_gate:
        from kpictl.services.schema.gate import check_schema

        with database.engine.connect() as connection:
            check_schema(connection)
    return database
