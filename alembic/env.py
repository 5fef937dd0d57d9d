"""Alembic environment for kpictl.

`kpictl migrate` passes its own connection in `config.attributes["connection"]` (Alembic's
connection-sharing recipe); offline mode (`migrate --sql`) needs no database at all; a developer
running `alembic` directly gets kpictl's usual URL resolution.
"""

from alembic import context
from kpictl.db.schema import metadata

VERSION_TABLE = "kpictl_alembic_version"
config = context.config


def include_object(obj, name, type_, reflected, compare_to):
    # Autogenerate compares kpictl's own tables only; source tables and views are not ours.
    if type_ == "table":
        return name in metadata.tables
    return True


def configure(**kwargs) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        transaction_per_migration=True,
        **kwargs,
    )


def run_offline() -> None:
    configure(url="postgresql+psycopg://", literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif config.attributes.get("connection") is not None:
    run_online(config.attributes["connection"])
else:
    from kpictl.db.engine import open_database
    from kpictl.settings import settings_from_environment

    database = open_database(settings_from_environment(flag_url=None, command="kpictl alembic"))
    with database.engine.connect() as connection:
        run_online(connection)
        connection.commit()
