"""Migrations: single head, up/down/up, source tables untouched, schema equals the Core tables."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from kpictl.db import migrations
from kpictl.db.engine import make_engine
from kpictl.db.schema import metadata
from tests.conftest import run_cli, test_settings

OWN_TABLES = {
    "kpi_snapshots",
    "kpi_aggregation_jobs",
    "tenants",
    "kpi_history",
    "kpi_history_grants",
}
SOURCES = {
    "repositories",
    "workflow_executions",
    "agent_runs",
    "mcp_tool_calls",
    "verdict_outcomes",
    "avi_reports",
    "vdp_vli_audit",
}


def tables(url: str) -> set[str]:
    engine = make_engine(url, test_settings(url))
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
    engine.dispose()
    return names


def scalar(url: str, query: str):
    engine = make_engine(url, test_settings(url))
    with engine.connect() as conn:
        value = conn.execute(text(query)).scalar()
    engine.dispose()
    return value


def columns(engine, table: str) -> str:
    with engine.connect() as conn:
        return json.dumps(inspect(conn).get_columns(table), default=str)


def test_single_head():
    script = ScriptDirectory.from_config(migrations.alembic_config())
    assert len(script.get_heads()) == 1


def test_up_down_up_on_empty_database(empty_db_url):
    result = run_cli(["migrate", "--with-sources"], empty_db_url)
    assert result.exit_code == 0, result.output
    assert tables(empty_db_url) >= OWN_TABLES | SOURCES

    result = run_cli(["migrate", "--downgrade", "base"], empty_db_url)
    assert result.exit_code == 0, result.output
    remaining = tables(empty_db_url)
    assert not OWN_TABLES & remaining
    assert remaining >= SOURCES  # a downgrade never drops a source table

    result = run_cli(["migrate"], empty_db_url)
    assert result.exit_code == 0, result.output
    assert tables(empty_db_url) >= OWN_TABLES


def test_existing_source_tables_and_rows_untouched(empty_db_url):
    engine = make_engine(empty_db_url, test_settings(empty_db_url))
    with engine.begin() as conn:
        # The platform's own shape: more columns than kpictl reads, a timestamp without zone.
        conn.execute(
            text("""
            CREATE TABLE repositories (id uuid PRIMARY KEY, owner text, name text,
                kpi_enabled boolean DEFAULT true, extra text);
            CREATE TABLE workflow_executions (id uuid PRIMARY KEY, repository_id uuid,
                status varchar(20), started_at timestamp, completed_at timestamp, note text);
            CREATE TABLE agent_runs (id serial PRIMARY KEY, execution_id uuid, prompt_tokens int,
                completion_tokens int, total_tokens int);
            CREATE TABLE mcp_tool_calls (id serial PRIMARY KEY, execution_id uuid, error text);
            CREATE TABLE verdict_outcomes (id serial PRIMARY KEY, execution_id uuid, outcome text,
                decided_at timestamp);
            INSERT INTO repositories VALUES ('11111111-1111-1111-1111-111111111111', 'o', 'n', true, 'x');
            INSERT INTO workflow_executions VALUES (gen_random_uuid(),
                '11111111-1111-1111-1111-111111111111', 'completed', '2026-01-01 10:00', '2026-01-01 11:00', 'y');
        """)
        )
    before = {
        name: scalar(
            empty_db_url, f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {name} t"
        )
        for name in ("repositories", "workflow_executions")
    }
    columns_before = columns(engine, "workflow_executions")
    for args in (["migrate"], ["migrate", "--downgrade", "base"], ["migrate", "--with-sources"]):
        result = run_cli(args, empty_db_url)
        assert result.exit_code == 0, result.output
    after = {
        name: scalar(
            empty_db_url, f"SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {name} t"
        )
        for name in ("repositories", "workflow_executions")
    }
    assert after == before
    assert columns(engine, "workflow_executions") == columns_before
    # --with-sources only created what was absent
    assert tables(empty_db_url) >= {"avi_reports", "vdp_vli_audit"}
    engine.dispose()


def test_plain_migrate_without_sources_names_them(empty_db_url):
    result = run_cli(["migrate"], empty_db_url)
    assert result.exit_code == 1
    assert "workflow_executions" in result.stderr and "--with-sources" in result.stderr
    assert "Traceback" not in result.output
    assert not OWN_TABLES & tables(empty_db_url)  # nothing written


def test_core_tables_match_migrated_schema(db_url):
    engine = make_engine(db_url, test_settings(db_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": lambda obj, name, type_, reflected, compare_to: (
                    type_ != "table" or name in metadata.tables
                ),
                "compare_server_default": True,
            },
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_row_level_security_is_enabled_and_forced(db_url):
    assert scalar(
        db_url,
        "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'kpi_history'",
    )
    policies = scalar(
        db_url,
        "SELECT string_agg(policyname || ':' || cmd, ',' ORDER BY policyname) FROM pg_policies "
        "WHERE tablename = 'kpi_history'",
    )
    # revision 0006: app.tenant for service roles (every command), grants for readers (SELECT)
    assert policies == "kpi_history_tenant_grants:SELECT,kpi_history_tenant_isolation:ALL"


def test_status_before_and_after(empty_db_url):
    before = run_cli(["migrate", "--status"], empty_db_url)
    assert before.exit_code == 1
    assert "current: none" in before.stdout and "behind" in before.stdout
    assert run_cli(["migrate", "--with-sources"], empty_db_url).exit_code == 0
    after = run_cli(["migrate", "--status", "--format", "json"], empty_db_url)
    assert after.exit_code == 0
    document = json.loads(after.stdout)["data"]
    assert document["up_to_date"] is True and document["current"] == document["head"]


def test_sql_needs_no_database():
    # An unreachable URL: --sql must not even try to connect.
    result = run_cli(
        ["migrate", "--sql", "--with-sources"], "postgresql://nobody:pw@127.0.0.1:1/none"
    )
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE kpi_snapshots" in result.stdout
    assert "CREATE TABLE IF NOT EXISTS workflow_executions" in result.stdout
    assert "ROW LEVEL SECURITY" in result.stdout
    down = run_cli(
        ["migrate", "--sql", "--downgrade", "base"], "postgresql://nobody:pw@127.0.0.1:1/none"
    )
    assert down.exit_code == 0 and "DROP TABLE kpi_snapshots" in down.stdout


def test_unknown_revision_is_a_usage_error(empty_db_url):
    result = run_cli(["migrate", "--to", "nope"], empty_db_url)
    assert result.exit_code == 2
    assert "'nope'" in result.stderr
    assert not OWN_TABLES & tables(empty_db_url)


def test_migrate_is_idempotent(db_url):
    first = run_cli(["migrate"], db_url)
    second = run_cli(["migrate"], db_url)
    assert first.exit_code == second.exit_code == 0
    head = migrations.head_revision()
    assert f"migrated: {head} -> {head}" in second.stdout
