"""`migrate --downgrade` that would drop tables holding rows asks first (issue 12, item 9): it
says what goes with row counts, needs --yes off a terminal, and holds every job lock."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from sqlalchemy import text

from kpictl.db import migrations
from kpictl.services.jobs.lock import HISTORY_FILL, PIPELINE, RETENTION
from kpictl.services.schema import migrate
from tests import factories as f
from tests.conftest import libpq, run_cli

W = date(2026, 1, 5)


@pytest.fixture
def history_db(db_url, engine):
    """Two tenants with a history row each (kpi_history is forced under RLS)."""
    with engine.begin() as conn:
        for slug in ("tenant-a", "tenant-b"):
            f.avi_report(conn, f.tenant(conn, slug), W, aiv_pct=10)
    assert run_cli(["history", "fill"], db_url).exit_code == 0
    return db_url


def state(engine) -> tuple:
    with engine.connect() as conn:
        revision = migrations.current_revision(conn)
        tables = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename IN ('kpi_history', 'tenants', 'kpi_snapshots', "
                "'kpi_aggregation_jobs', 'kpi_history_grants')"
            )
        ).scalar()
        history = conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() if tables else 0
    return revision, tables, history


def test_without_yes_off_a_terminal_nothing_changes(history_db, engine):
    before = state(engine)
    assert before == (migrations.head_revision(), 5, 2)
    result = run_cli(["migrate", "--downgrade", "base"], history_db)
    assert result.exit_code == 1, result.output
    assert "kpi_history (2 rows)" in result.stderr and "tenants (2 rows)" in result.stderr
    assert "nothing was changed" in result.stderr and "--yes" in result.stderr
    assert "Traceback" not in result.output
    assert state(engine) == before


def test_plan_counts_every_tenant_s_rows(history_db, engine):
    with engine.connect() as conn:
        plan = migrate.downgrade_plan(conn, "base")
    counts = dict(plan.tables)
    assert counts["kpi_history"] == 2 and counts["tenants"] == 2
    assert counts["kpi_history_grants"] == 0
    assert plan.holds_rows
    with engine.connect() as conn:  # to 0005: only the (empty) grants table goes
        assert migrate.downgrade_plan(conn, "0005").tables == [("kpi_history_grants", 0)]


def test_with_yes_it_drops_and_says_what(history_db, engine):
    result = run_cli(["migrate", "--downgrade", "base", "--yes"], history_db)
    assert result.exit_code == 0, result.output
    assert "drops kpi_history_grants (0 rows)" in result.stderr
    assert "kpi_history (2 rows)" in result.stderr
    assert "migrated: " in result.stdout and "-> base" in result.stdout
    assert state(engine) == (None, 0, 0)
    assert run_cli(["migrate"], history_db).exit_code == 0  # and back up


def test_a_downgrade_that_drops_only_empty_tables_needs_no_yes(history_db, engine):
    result = run_cli(["migrate", "--downgrade", "0005"], history_db)
    assert result.exit_code == 0, result.output
    assert state(engine)[0] == "0005"
    assert state(engine)[2] == 2  # the history stays


@pytest.mark.parametrize("lock", [PIPELINE, RETENTION, HISTORY_FILL], ids=lambda lock: lock.name)
def test_a_held_job_lock_exits_75_and_changes_nothing(history_db, engine, lock):
    before = state(engine)
    with psycopg.connect(libpq(history_db), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock.key,))
        result = run_cli(["migrate", "--downgrade", "base", "--yes"], history_db)
    assert result.exit_code == 75, result.output
    assert f"another {lock.name} run holds the lock" in result.stderr
    assert state(engine) == before


def test_a_non_superuser_owner_migrates_counts_and_downgrades(pg_server):
    """As in production: the tables' owner is not a superuser, so FORCE ROW LEVEL SECURITY
    applies to it. Revision 0006 still installs, the owner sees no history without app.tenant,
    and the downgrade plan still counts every tenant's rows."""
    import uuid

    from psycopg import sql
    from sqlalchemy.engine import make_url

    from kpictl.db.engine import make_engine
    from tests.conftest import test_settings

    role = f"kpictl_owner_{uuid.uuid4().hex[:8]}"
    name = f"o_{uuid.uuid4().hex[:12]}"
    with pg_server.admin() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(role)
            )
        )
    url = (
        make_url(pg_server.admin_url)
        .set(database=name, username=role, password=None)
        .render_as_string(hide_password=False)
    )
    try:
        assert run_cli(["migrate", "--with-sources"], url).exit_code == 0
        engine = make_engine(url, test_settings(url))
        with engine.begin() as conn:
            for slug in ("tenant-a", "tenant-b"):
                f.avi_report(conn, f.tenant(conn, slug), W, aiv_pct=10)
        assert run_cli(["history", "fill"], url).exit_code == 0
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 0
            assert dict(migrate.downgrade_plan(conn, "base").tables)["kpi_history"] == 2
        assert run_cli(["doctor"], url).exit_code == 0
        refused = run_cli(["migrate", "--downgrade", "base"], url)
        assert refused.exit_code == 1 and "kpi_history (2 rows)" in refused.stderr
        assert run_cli(["migrate", "--downgrade", "base", "--yes"], url).exit_code == 0
        engine.dispose()
    finally:
        pg_server.drop_database(name)
        with pg_server.admin() as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
