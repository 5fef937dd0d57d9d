"""Revision 0009's covering source indexes: what a cycle reads of the runs by `completed_at`
(the hourly parts, the window's edges, both views) and of the verdicts by `decided_at` is in
the index, so those reads are index-only scans whatever order the platform's table holds the
rows in (docs/PERFORMANCE.md, "Scaling"). The run level reads more columns (ids, tokens) and is
not among them.

The plans are asked for with sequential and bitmap scans off: the planner then uses an
index-only scan wherever the index holds every column a scan needs, and a plain index scan
(which reads the table) wherever it does not, and a scan of the whole index where the rows are
not picked by a range of it (an OR of two ranges)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import kpi_sql, steps
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline.periods import Period
from tests import factories as f

START = datetime(2026, 1, 5, tzinfo=UTC)
COVERS = {
    "workflow_executions": "kpictl_workflow_executions_completed_cover",
    "verdict_outcomes": "kpictl_verdict_outcomes_decided_cover",
}
# the statements that read the sources through the covering indexes (text each one holds)
READS = (
    "INSERT INTO kpi_hourly_runs",
    "INSERT INTO kpi_hourly_totals",
    f"INSERT INTO {kpi_sql.PARTS_TABLE}",
    "'factory', NULL",
)
VIEWS = ("mv_factory_kpis_24h", "mv_product_kpis_7d")
RUNNING = {"kpictl_workflow_executions_running_started_at"}


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def cycle_statements(engine) -> list[tuple[str, Any]]:
    """A cycle over [00:15, 12:15): two partial edge hours and eleven full ones."""
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        pipeline.aggregate(
            engine,
            Period(at(0.25), at(12.25)),
            metadata={},
            options=steps.PipelineOptions(),
            stop=StopRequest(),
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return captured


def scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") in COVERS else []
    for child in plan.get("Plans", ()):
        found += scans(child)
    return found


def test_the_cycles_reads_by_completion_and_decision_are_index_only(engine):
    with engine.begin() as conn:
        repository = f.repository(conn, "acme", "app")
        for hour in (0.5, 1.5, 2.5, 11.5, 12.1):  # both edges and full hours
            run = f.execution(conn, repository, "completed", at(hour - 0.25), at(hour))
            f.verdict(conn, run, "accepted", at(hour))
    captured = cycle_statements(engine)
    reads = [(sql, parameters) for sql, parameters in captured if any(m in sql for m in READS)]
    assert sorted(m for m in READS for sql, _ in reads if m in sql) == sorted(READS)
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        for sql, parameters in captured:
            if sql.lstrip().startswith("CREATE TEMP TABLE"):
                cursor.execute(sql, parameters)
        plans = {}
        for sql, parameters in reads:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, parameters)
            plans[sql.strip().splitlines()[0][:60]] = cursor.fetchone()[0][0]["Plan"]
        for view in VIEWS:
            cursor.execute("SELECT pg_get_viewdef(%s::regclass)", (view,))
            cursor.execute("EXPLAIN (FORMAT JSON) " + cursor.fetchone()[0].rstrip().rstrip(";"))
            plans[view] = cursor.fetchone()[0][0]["Plan"]
        conn.rollback()
    used = set()
    for name, plan in plans.items():
        for node in scans(plan):
            table, index = node["Relation Name"], node.get("Index Name")
            if index in RUNNING:
                continue  # the factory view's count of running runs, by started_at
            detail = f"{name}: {json.dumps(node)[:400]}"
            assert (node["Node Type"], index) == ("Index Only Scan", COVERS[table]), detail
            assert "Index Cond" in node, detail  # a range of the index, not all of it
            used.add(index)
    assert used == set(COVERS.values())
