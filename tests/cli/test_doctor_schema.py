"""`kpictl doctor` checks what the pipeline needs at head (issue 12, item 6) and `kpictl migrate`
puts it back: the materialized views, the snapshot key, kpi_history's row-level security, the
kpictl_* source indexes; a job left `running` without a live lock holder."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy import insert, text

from kpictl.db import migrations
from kpictl.db.schema import kpi_aggregation_jobs
from kpictl.services.jobs.lock import RETENTION
from tests import factories
from tests.conftest import libpq, run_cli


def doctor(db_url: str) -> tuple[int, dict[str, dict], str]:
    result = run_cli(["doctor", "--format", "json"], db_url)
    document = json.loads(result.stdout)["data"]
    text_output = run_cli(["doctor"], db_url).stdout
    return result.exit_code, {check["name"]: check for check in document["checks"]}, text_output


BREAKAGES = [
    (
        "DROP MATERIALIZED VIEW mv_factory_kpis_24h",
        "materialized views",
        "mv_factory_kpis_24h missing",
    ),
    (
        "DROP MATERIALIZED VIEW mv_product_kpis_7d",
        "materialized views",
        "mv_product_kpis_7d missing",
    ),
    ("DROP INDEX ux_mv_factory_kpis_24h", "materialized views", "no unique index ux_mv_factory"),
    (
        "ALTER TABLE kpi_snapshots DROP CONSTRAINT uq_kpi_snapshots_key",
        "snapshot key",
        "uq_kpi_snapshots_key of kpi_snapshots missing",
    ),
    (
        "DROP POLICY kpi_history_tenant_isolation ON kpi_history",
        "history security",
        "policy kpi_history_tenant_isolation missing",
    ),
    (
        "DROP POLICY kpi_history_tenant_grants ON kpi_history",
        "history security",
        "policy kpi_history_tenant_grants missing",
    ),
    ("ALTER TABLE kpi_history NO FORCE ROW LEVEL SECURITY", "history security", "not FORCE"),
    ("ALTER TABLE kpi_history DISABLE ROW LEVEL SECURITY", "history security", "disabled"),
    (
        "DROP INDEX kpictl_workflow_executions_completed_cover",
        "source indexes",
        "kpictl_workflow_executions_completed_cover on workflow_executions (completed_at) "
        "INCLUDE (status, started_at, repository_id) missing",
    ),
    (
        "DROP INDEX kpictl_workflow_executions_running_started_at",
        "source indexes",
        "kpictl_workflow_executions_running_started_at on workflow_executions (started_at) missing",
    ),
    (
        # what an interrupted CREATE INDEX CONCURRENTLY leaves behind
        "UPDATE pg_index SET indisvalid = false "
        "WHERE indexrelid = 'kpictl_agent_runs_execution_id'::regclass",
        "source indexes",
        "kpictl_agent_runs_execution_id on agent_runs (execution_id) invalid",
    ),
]


def test_a_healthy_database_passes_every_new_check(db_url):
    code, checks, _ = doctor(db_url)
    assert code == 0
    for name in ("materialized views", "snapshot key", "history security", "source indexes"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["running jobs"]["status"] == "ok"


@pytest.mark.parametrize(("breakage", "check", "detail"), BREAKAGES)
def test_each_broken_item_fails_and_migrate_puts_it_back(db_url, engine, breakage, check, detail):
    with engine.begin() as conn:
        conn.execute(text(breakage))
    code, checks, text_output = doctor(db_url)
    assert code == 1, checks
    assert checks[check]["status"] == "fail"
    assert detail in checks[check]["detail"]
    assert "run `kpictl migrate`" in checks[check]["detail"]  # what to run
    assert f"FAIL  {check}" in text_output and "unhealthy" in text_output

    result = run_cli(["migrate"], db_url)
    assert result.exit_code == 0, result.output
    head = migrations.head_revision()
    assert f"migrated: {head} -> {head}" in result.stdout
    said = [
        line for line in result.stdout.splitlines() if line.startswith(("repaired:", "rebuilt"))
    ]
    assert said, result.stdout  # it says what it did
    code, checks, _ = doctor(db_url)
    assert code == 0 and checks[check]["status"] == "ok", checks[check]
    again = run_cli(["migrate"], db_url)
    assert again.stdout == f"migrated: {head} -> {head}\n"  # nothing left to do


def test_migrate_rebuilds_a_dropped_index_concurrently_and_says_so(db_url, engine):
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX kpictl_verdict_outcomes_decided_cover"))
    result = run_cli(["migrate", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["data"]
    assert document["indexes_rebuilt"] == [
        "kpictl_verdict_outcomes_decided_cover on verdict_outcomes (decided_at) INCLUDE (outcome) "
        "(was missing)"
    ]
    with engine.connect() as conn:
        valid = conn.execute(
            text(
                "SELECT indisvalid FROM pg_index "
                "WHERE indexrelid = 'kpictl_verdict_outcomes_decided_cover'::regclass"
            )
        ).scalar()
    assert valid is True
    text_result = run_cli(["migrate"], db_url)
    assert "rebuilt" not in text_result.stdout


def test_an_unknown_policy_on_kpi_history_fails(db_url, engine):
    with engine.begin() as conn:
        conn.execute(text("CREATE POLICY everything ON kpi_history FOR SELECT USING (true)"))
    code, checks, _ = doctor(db_url)
    assert code == 1
    assert checks["history security"]["status"] == "fail"
    assert "everything" in checks["history security"]["detail"]
    assert "DROP POLICY" in checks["history security"]["detail"]


def test_a_running_job_without_a_lock_holder_fails(db_url, engine):
    with engine.begin() as conn:
        conn.execute(
            insert(kpi_aggregation_jobs).values(
                job_type="retention", status="running", started_at=factories.at(1)
            )
        )
    code, checks, _ = doctor(db_url)
    assert code == 1
    running = checks["running jobs"]
    assert running["status"] == "fail"
    assert "no process holds the retention lock" in running["detail"]
    assert "run `kpictl retention`" in running["detail"]
    # with a live holder of that lock it is a job in progress, not an orphan
    with psycopg.connect(libpq(db_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (RETENTION.key,))
        code, checks, _ = doctor(db_url)
    assert checks["running jobs"]["status"] == "ok"
    # the next run of that kind marks it abandoned, and doctor is happy again
    assert run_cli(["retention"], db_url).exit_code == 0
    code, checks, _ = doctor(db_url)
    assert checks["running jobs"]["status"] == "ok"
