"""The schema gate (adoption.md, last addendum; issue 11 item 3, issue 12 item 8): every command
that reads or writes kpictl's tables stops, exit 1, with one line naming what to run, before it
writes anything, unless the database is at this kpictl's head revision.

Databases: an un-adopted AFU-9 stand-in (`tests/afu9.py`, built once per module, cloned per
test), an empty database, and a migrated one stamped at an older or an unknown newer revision.
The head is derived from Alembic, never written here: revisions are added over time.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from kpictl.db import migrations
from kpictl.db.engine import make_engine
from kpictl.db.revisions import head_from_files
from kpictl.services.schema.gate import check_schema
from tests import afu9
from tests.conftest import run_cli, test_settings
from tests.helpers import imported_modules

# Every gated command with its minimal arguments.
GATED = [
    pytest.param(["aggregate"], id="aggregate"),
    pytest.param(["aggregate", "--dry-run"], id="aggregate-dry-run"),
    pytest.param(["backfill", "--since", "2026-01-01", "--until", "2026-01-03"], id="backfill"),
    pytest.param(["kpis"], id="kpis"),
    pytest.param(["jobs"], id="jobs"),
    pytest.param(["jobs", "show", "00000000-0000-0000-0000-000000000201"], id="jobs-show"),
    pytest.param(["freshness"], id="freshness"),
    pytest.param(["freshness", "--format", "nagios"], id="freshness-nagios"),
    pytest.param(["retention"], id="retention"),
    pytest.param(["history", "fill"], id="history-fill"),
    pytest.param(["history", "export", "--tenant", "x"], id="history-export"),
    pytest.param(["report", "--output", "/tmp/kpictl-gated-report.html"], id="report"),
]

CLI_DIR = Path(__file__).resolve().parents[2] / "kpictl" / "cli"


def head() -> str:
    return migrations.head_revision()


def older_revision() -> str:
    """The revision just below head."""
    script = ScriptDirectory.from_config(migrations.alembic_config())
    down = script.get_revision(head()).down_revision
    assert isinstance(down, str)
    return down


def newer_revision() -> str:
    """A revision this kpictl does not ship, as a newer kpictl would have written."""
    newer = f"{int(head()) + 1:04d}"
    assert newer not in migrations.known_revisions()
    return newer


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url, test_settings(url))

    def scalar(self, sql: str):
        with self.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def execute(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql))

    def fingerprint(self):
        with self.engine.connect() as conn:
            return afu9.fingerprint(conn)

    def relations(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT relname FROM pg_class WHERE relnamespace NOT IN "
                        "(SELECT oid FROM pg_namespace WHERE nspname IN "
                        "('pg_catalog', 'information_schema', 'pg_toast'))"
                    )
                ).scalars()
            )


@pytest.fixture(scope="module")
def afu9_template(pg_server):
    name = f"gate_afu9_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    engine = make_engine(url, test_settings(url))
    with engine.begin() as conn:
        afu9.build_afu9(conn, datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0))
    engine.dispose()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def afu9_db(pg_server, afu9_template):
    name = f"g_{uuid.uuid4().hex[:12]}"
    database = Database(pg_server.create_database(name, template=afu9_template))
    yield database
    database.engine.dispose()
    pg_server.drop_database(name)


@pytest.fixture
def empty_db(empty_db_url):
    database = Database(empty_db_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def migrated_db(db_url):
    database = Database(db_url)
    yield database
    database.engine.dispose()


def assert_stopped(result, *expected: str, json_output: bool = False) -> None:
    """Exit 1, nothing on stdout (with --format json: the error document of docs/OUTPUT.md),
    one `kpictl: error:` line on stderr holding `expected`."""
    import json

    assert result.exit_code == 1, result.output
    if json_output:
        error = json.loads(result.stdout)["error"]
        assert error["exit_code"] == 1 and all(text_ in error["message"] for text_ in expected)
    else:
        assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kpictl: error: ")
    for text_ in expected:
        assert text_ in lines[0], lines[0]
    for leak in ("Traceback", "internal error", "LINE ", "SELECT", "relation", "does not exist"):
        assert leak not in result.output


# --- the four outcomes, for every gated command -----------------------------------------------


@pytest.mark.parametrize("args", GATED)
def test_unadopted_afu9_database_is_refused_and_untouched(afu9_db, args):
    jobs_before = afu9_db.scalar("SELECT count(*) FROM kpi_aggregation_jobs")
    before = afu9_db.fingerprint()
    result = run_cli(args, afu9_db.url)
    assert_stopped(result, "AFU-9 tables found, not adopted", "run `kpictl migrate --adopt`")
    assert afu9_db.scalar("SELECT count(*) FROM kpi_aggregation_jobs") == jobs_before
    assert afu9_db.fingerprint() == before


@pytest.mark.parametrize("args", GATED)
def test_empty_database_is_refused_and_untouched(empty_db, args):
    before = empty_db.fingerprint()
    result = run_cli(args, empty_db.url)
    assert_stopped(result, "not migrated: run `kpictl migrate`")
    assert empty_db.relations() == []  # no table, not even the version table
    assert empty_db.fingerprint() == before


@pytest.mark.parametrize("args", GATED)
def test_older_revision_is_refused_and_untouched(migrated_db, args):
    older = older_revision()
    migrated_db.execute(f"UPDATE kpictl_alembic_version SET version_num = '{older}'")
    before = migrated_db.fingerprint()
    result = run_cli(args, migrated_db.url)
    assert_stopped(
        result,
        f"database is at revision {older}, this kpictl needs {head()}: run `kpictl migrate`",
    )
    assert migrated_db.scalar("SELECT count(*) FROM kpi_aggregation_jobs") == 0
    assert migrated_db.fingerprint() == before


@pytest.mark.parametrize("args", GATED)
def test_unknown_newer_revision_is_refused_and_untouched(migrated_db, args):
    newer = newer_revision()
    migrated_db.execute(f"UPDATE kpictl_alembic_version SET version_num = '{newer}'")
    before = migrated_db.fingerprint()
    result = run_cli(args, migrated_db.url)
    assert_stopped(
        result,
        f"database is at revision {newer}, this kpictl knows up to {head()}: upgrade kpictl",
        json_output="json" in args,
    )
    assert migrated_db.scalar("SELECT count(*) FROM kpi_aggregation_jobs") == 0
    assert migrated_db.fingerprint() == before


# --- migrate and doctor on a database a newer kpictl migrated ---------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["migrate", "--status"],
        ["migrate", "--status", "--format", "json"],
        ["migrate", "--adopt"],
        ["migrate", "--downgrade", "base"],
    ],
    ids=" ".join,
)
def test_migrate_says_the_same_about_a_newer_revision(migrated_db, args):
    newer = newer_revision()
    migrated_db.execute(f"UPDATE kpictl_alembic_version SET version_num = '{newer}'")
    before = migrated_db.fingerprint()
    result = run_cli(args, migrated_db.url)
    assert_stopped(
        result,
        f"database is at revision {newer}, this kpictl knows up to {head()}: upgrade kpictl",
        json_output="json" in args,
    )
    assert migrated_db.fingerprint() == before


def test_doctor_says_the_same_as_the_gate(migrated_db):
    import json

    def migrations_check() -> tuple[int, dict]:
        result = run_cli(["doctor", "--format", "json"], migrated_db.url)
        assert result.stdout, result.output
        checks = {check["name"]: check for check in json.loads(result.stdout)["data"]["checks"]}
        return result.exit_code, checks["migrations"]

    code, check = migrations_check()
    assert (code, check["status"], check["detail"]) == (0, "ok", f"at head {head()}")
    newer, older = newer_revision(), older_revision()
    for stamped, says in (
        (newer, f"database is at revision {newer}, this kpictl knows up to {head()}: upgrade"),
        (older, f"database is at revision {older}, this kpictl needs {head()}: run `kpictl"),
    ):
        migrated_db.execute(f"UPDATE kpictl_alembic_version SET version_num = '{stamped}'")
        code, check = migrations_check()
        assert code == 1 and check["status"] == "fail"
        assert check["detail"].startswith(says), check["detail"]


def test_doctor_on_afu9_and_empty_databases(afu9_db, empty_db):
    for database, says in (
        (afu9_db, "AFU-9 tables found, not adopted: run `kpictl migrate --adopt`"),
        (empty_db, "not migrated: run `kpictl migrate`"),
    ):
        result = run_cli(["doctor"], database.url)
        assert result.exit_code == 1
        assert says in result.stdout


# --- the happy path: one query, no Alembic ----------------------------------------------------


def test_at_head_the_gate_runs_one_query(migrated_db):
    statements: list[str] = []
    event.listen(
        migrated_db.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    with migrated_db.engine.connect() as connection:
        check_schema(connection)
    assert len(statements) == 1, statements
    assert "kpictl_alembic_version" in statements[0]


def test_a_command_at_head_imports_no_alembic(migrated_db):
    modules = imported_modules(["jobs"], env={"KPICTL_DATABASE_URL": migrated_db.url})
    assert {"kpictl", "sqlalchemy", "psycopg"} <= modules  # it did open the database
    assert "alembic" not in modules


def test_a_role_that_may_not_read_the_version_table_is_let_through(migrated_db):
    """docs/SECURITY.md grants a read-only role only what its command reads: the version table
    exists (so kpictl migrated the database) but that role cannot read which revision."""
    role = f"gate_reader_{uuid.uuid4().hex[:8]}"
    migrated_db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        migrated_db.execute(f"GRANT SELECT ON kpi_snapshots, repositories TO {role}")
        url = make_url(migrated_db.url).set(username=role).render_as_string(hide_password=False)
        result = run_cli(["kpis", "--format", "json"], url)
        assert result.exit_code == 0, result.output
        denied = run_cli(["jobs"], url)  # no grant on the jobs table: the work says so
        assert denied.exit_code == 77 and "kpi_aggregation_jobs" in denied.stderr
    finally:
        migrated_db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_the_files_name_the_head_alembic_knows():
    assert head_from_files() == head()
    assert head() in migrations.known_revisions()


def test_every_command_opens_its_database_through_the_gate():
    """A new command gets the gate by default: no module under kpictl/cli/ opens the database
    by another road, and only migrate, doctor and demo opt out."""
    opted_out = set()
    for path in CLI_DIR.glob("*.py"):
        if path.name == "database.py":  # the one place that opens it
            continue
        source = path.read_text()
        assert "kpictl.db.engine import open_database" not in source, path.name
        assert "make_engine" not in source, path.name
        if re.search(r"schema_gate\s*=\s*False", source):
            opted_out.add(path.stem)
    assert opted_out == {"migrate", "doctor", "demo"}


# --- a failing command prints its error once ---------------------------------------------------


def test_a_failed_aggregate_reports_its_error_once(migrated_db):
    migrated_db.execute("ALTER TABLE agent_runs RENAME COLUMN total_tokens TO renamed_tokens")
    result = run_cli(["aggregate"], migrated_db.url)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "total_tokens" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("kpictl: error: database error:")
    assert migrated_db.scalar("SELECT status FROM kpi_aggregation_jobs") == "failed"
