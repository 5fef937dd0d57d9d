"""Helpers shared by test modules: waiting on observable state, real processes, queries and
roles. Data builders are in tests/factories.py; the database fixtures, `run_cli` and
`run_process` in tests/conftest.py.

Tests never sleep to synchronise with another process: they `wait_for` what that process does
to the outside world (a row, a backend in pg_stat_activity, a lock in pg_locks, a file)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kpictl._testing import GATE_KEY
from tests.conftest import ENV_KEYS, libpq

# The backends of this database (other than the asking one) sleeping in a step's pg_sleep, as
# KPICTL_DEBUG_STEP_SLEEP makes them (kpictl/_testing.py).
SLEEPING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'active' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
)


def wait_for(
    predicate: Callable[[], object], timeout: float = 90.0, interval: float = 0.1, what: str = ""
) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds (generous: CI
    runs two workers on two cores, with coverage measuring every subprocess)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not reached in {timeout:g} s" + (f": {what}" if what else ""))


def scalar(engine, query: str, **parameters):
    """The first column of the first row of `query` (None when there is no row)."""
    with engine.connect() as conn:
        return conn.execute(text(query), parameters).scalar()


def sleeping_backends(engine) -> int:
    """How many backends of this database sleep in a step's pg_sleep right now."""
    return scalar(engine, SLEEPING)


# The backends of this database waiting at the step gate of KPICTL_DEBUG_STEP_GATE.
AT_GATE = (
    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
    "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted "
    f"AND l.classid::bigint = {GATE_KEY >> 32} AND l.objid::bigint = {GATE_KEY & 0xFFFFFFFF}"
)


@contextmanager
def step_gate(engine) -> Iterator[Callable[[], None]]:
    """Close the gate of KPICTL_DEBUG_STEP_GATE for the block; yields `open_gate()`, which lets
    the waiting steps go on (the block's end opens it too). The holding session never times out."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    conn.exec_driver_sql("SET idle_session_timeout = 0")
    conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": GATE_KEY})
    held = [True]

    def open_gate() -> None:
        if held[0]:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": GATE_KEY})
            held[0] = False

    try:
        yield open_gate
    finally:
        open_gate()
        conn.close()


def spawn(args: list[str], url: str, **env: str) -> subprocess.Popen:
    """Start `python -m kpictl ARGS` on `url` as a real process (stdout and stderr piped)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    full_env.update(KPICTL_DATABASE_URL=url, **env)
    return subprocess.Popen(
        [sys.executable, "-m", "kpictl", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def terminate(engine, pid: int) -> None:
    """End a backend and wait until it is gone (and its locks with it)."""
    assert scalar(engine, "SELECT pg_terminate_backend(:pid)", pid=pid)
    wait_for(
        lambda: (
            scalar(engine, "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", pid=pid) == 0
        ),
        what=f"backend {pid} gone",
    )


def stop_embedded_server(pgdata: Path) -> None:
    """Stop the embedded server a test started in a fresh HOME (SIGTERM to its postmaster)."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().splitlines()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def imported_modules(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The top-level modules `python -m kpictl ARGS` imports (from `-X importtime`)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kpictl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


# --- queries ----------------------------------------------------------------------------------


def db_now(engine):
    """The server's now()."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT now()")).scalar_one()


def snapshot_counts(engine) -> dict[str, int]:
    """kpi_snapshots rows per level (levels without rows left out)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT level, count(*) FROM kpi_snapshots GROUP BY level")).all()
    return {level: n for level, n in rows}


def jobs_of_type(engine, job_type: str) -> list[dict]:
    """The kpi_aggregation_jobs rows of `job_type`, as dicts."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM kpi_aggregation_jobs WHERE job_type = :type"), {"type": job_type}
        ).mappings()
        return [dict(row) for row in rows]


# --- roles ------------------------------------------------------------------------------------

# What a dashboard or the fill needs; `kpi_history` privileges are added per role.
READ_SOURCES = ("tenants", "avi_reports", "vdp_vli_audit")


@contextmanager
def login_role(db_url: str, history_privileges: str, *, jobs: bool = True) -> Iterator[str]:
    """A fresh LOGIN role (not the owner, not a superuser) with `history_privileges` on
    kpi_history; yields its URL and drops it afterwards. The embedded server trusts local
    connections, so a session for that role is the test URL with another user name."""
    role = f"kpictl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(db_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for table in READ_SOURCES:
            admin.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(
                    sql.Identifier(table), sql.Identifier(role)
                )
            )
        if history_privileges:
            admin.execute(
                sql.SQL("GRANT {} ON kpi_history TO {}").format(
                    sql.SQL(history_privileges), sql.Identifier(role)
                )
            )
        if jobs:
            admin.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE ON kpi_aggregation_jobs TO {}").format(
                    sql.Identifier(role)
                )
            )
    try:
        yield (
            make_url(db_url).set(username=role, password=None).render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(libpq(db_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
