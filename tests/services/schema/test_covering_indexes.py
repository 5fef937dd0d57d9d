"""Revision 0009: covering `kpictl_*` indexes replace 0002's narrow ones on `completed_at` and
`decided_at`, and the views read their window's edges as two ranges; the views' values are the
same before and after, both ways."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import run_cli
from tests.helpers import db_now

COVERS = {
    "kpictl_workflow_executions_completed_cover": "(completed_at) INCLUDE (status, started_at, "
    "repository_id)",
    "kpictl_verdict_outcomes_decided_cover": "(decided_at) INCLUDE (outcome)",
}
NARROW = {
    "kpictl_workflow_executions_completed_at": "(completed_at)",
    "kpictl_verdict_outcomes_decided_at": "(decided_at)",
}
VIEW_ROWS = {  # every column but calculated_at and the window's bounds (now())
    "mv_factory_kpis_24h": "SELECT terminal_runs, completed_runs, failed_runs, success_rate, "
    "mtti_ms, runs_per_day, verdicts_accepted, verdicts_decided, steering_accuracy, "
    "success_rate_pct, running_executions FROM mv_factory_kpis_24h",
    "mv_product_kpis_7d": "SELECT repository_id, product, terminal_runs, completed_runs, "
    "failed_runs, success_rate, runs_per_day, avg_duration_ms FROM mv_product_kpis_7d "
    "ORDER BY product",
}


def migrate(url: str, *args: str) -> None:
    result = run_cli(["migrate", *args], url)
    assert result.exit_code == 0, result.output


def kpictl_indexes(engine) -> dict[str, str]:
    """name -> the index's columns as the catalog prints them, for the two timestamps."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexname, substring(indexdef FROM ' USING btree (.*)$') FROM pg_indexes "
                "WHERE indexname LIKE 'kpictl\\_%' "
                "AND tablename IN ('workflow_executions', 'verdict_outcomes') "
                "AND indexdef NOT LIKE '%WHERE%'"
            )
        ).all()
    return dict(rows)


def view_rows(engine) -> dict[str, list]:
    with engine.begin() as conn:
        for view in VIEW_ROWS:
            conn.execute(text(f"REFRESH MATERIALIZED VIEW {view}"))
        return {view: conn.execute(text(query)).all() for view, query in VIEW_ROWS.items()}


@pytest.fixture
def at_0008(empty_db_url, engine_for):
    """A database downgraded to 0008 with runs and verdicts over the last two days, and hourly
    parts kept by an aggregate (so the views read full hours from the parts and their edges
    from the runs)."""
    migrate(empty_db_url, "--with-sources")
    engine = engine_for(empty_db_url)
    now = db_now(engine)
    with engine.begin() as conn:
        app, lib = f.repository(conn, "acme", "app"), f.repository(conn, "acme", "lib")
        for minutes in range(10, 48 * 60, 47):  # every 47 minutes: edges and full hours
            completed = now - timedelta(minutes=minutes)
            repository = app if minutes % 3 else lib
            status = "failed" if minutes % 5 == 0 else "completed"
            run = f.execution(conn, repository, status, completed - timedelta(minutes=7), completed)
            f.verdict(conn, run, "accepted" if minutes % 4 else "overridden", completed)
        f.execution(conn, app, "running", now - timedelta(hours=1), None)
    result = run_cli(["aggregate"], empty_db_url)
    assert result.exit_code == 0, result.output
    migrate(empty_db_url, "--downgrade", "0008")
    return engine


def test_0009_covers_the_timestamps_and_keeps_the_views_values_both_ways(empty_db_url, at_0008):
    engine = at_0008
    assert kpictl_indexes(engine) == NARROW
    before = view_rows(engine)
    assert before["mv_factory_kpis_24h"][0].terminal_runs > 0
    assert len(before["mv_product_kpis_7d"]) == 2

    migrate(empty_db_url)
    assert kpictl_indexes(engine) == COVERS
    assert view_rows(engine) == before
    doctor = run_cli(["doctor", "--format", "json"], empty_db_url)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["data"]["checks"]}
    assert checks["source indexes"] == {
        "name": "source indexes",
        "status": "ok",
        "detail": "6 kpictl_* indexes valid",
    }

    migrate(empty_db_url, "--downgrade", "0008")
    assert kpictl_indexes(engine) == NARROW
    assert view_rows(engine) == before
    migrate(empty_db_url)
    assert kpictl_indexes(engine) == COVERS


def test_the_sql_of_0009_builds_the_covers_concurrently_after_its_transaction():
    result = run_cli(["migrate", "--sql", "--from", "0008"], "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 0, result.output
    script = result.stdout
    for name, columns in COVERS.items():
        assert f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON " in script
        assert columns.split(" INCLUDE ")[1] in script
    for name in NARROW:
        assert f"DROP INDEX CONCURRENTLY IF EXISTS {name}" in script
    # the covers exist before the narrow ones go
    assert script.index("CREATE INDEX CONCURRENTLY") < script.index("DROP INDEX CONCURRENTLY")
