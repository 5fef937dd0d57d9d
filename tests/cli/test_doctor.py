"""`kpictl doctor`: verdicts, JSON shape, exit codes."""

from __future__ import annotations

import json

from sqlalchemy import text

from kpictl.db.engine import make_engine
from tests.conftest import run_cli, test_settings


def test_healthy_database(db_url):
    result = run_cli(["doctor"], db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "healthy"  # the verdict line ("unhealthy" fails)
    assert "migrations" in result.stdout and "source workflow_executions" in result.stdout


def test_json_shape(db_url):
    result = run_cli(["doctor", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    envelope = json.loads(result.stdout)
    assert set(envelope) == {"status", "data"} and envelope["status"] == "success"
    document = envelope["data"]
    assert document["health"] == "healthy"
    assert set(document) == {"health", "checked_at", "checks"}
    assert all(set(check) == {"name", "status", "detail"} for check in document["checks"])


def test_missing_source_column_is_named(db_url):
    engine = make_engine(db_url, test_settings(db_url))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE workflow_executions DROP COLUMN completed_at CASCADE"))
        conn.execute(text("ALTER TABLE agent_runs ALTER COLUMN total_tokens TYPE text"))
    engine.dispose()
    result = run_cli(["doctor", "--format", "json"], db_url)
    assert result.exit_code == 1
    document = json.loads(result.stdout)["data"]
    assert document["health"] == "unhealthy"
    checks = {check["name"]: check for check in document["checks"]}
    assert checks["source workflow_executions"]["status"] == "fail"
    assert "completed_at missing" in checks["source workflow_executions"]["detail"]
    assert "total_tokens is text" in checks["source agent_runs"]["detail"]


def test_unmigrated_database_is_unhealthy(empty_db_url):
    result = run_cli(["doctor"], empty_db_url)
    assert result.exit_code == 1
    assert "not migrated" in result.stdout


def test_unreachable_json_still_printed():
    result = run_cli(["doctor", "--format", "json"], "postgresql://u:pw@127.0.0.1:1/x")
    assert result.exit_code == 69
    assert json.loads(result.stdout)["data"]["health"] == "unhealthy"


def test_missing_source_index_fails(db_url):
    engine = make_engine(db_url, test_settings(db_url))
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX kpictl_workflow_executions_completed_cover"))
    engine.dispose()
    result = run_cli(["doctor", "--format", "json"], db_url)
    assert result.exit_code == 1  # issue 12: the pipeline needs it (was a warning)
    checks = {check["name"]: check for check in json.loads(result.stdout)["data"]["checks"]}
    assert checks["source indexes"]["status"] == "fail"
    assert (
        "kpictl_workflow_executions_completed_cover on workflow_executions (completed_at) "
        "INCLUDE (status, started_at, repository_id) missing" in checks["source indexes"]["detail"]
    )
