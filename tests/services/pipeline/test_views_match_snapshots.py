"""The materialized views and the snapshots say the same thing for the same period (issue 13):
both are computed from the same rules (kpi_sql.py for the snapshots, revision 0005 for the views),
and this test keeps them in step.

The views' windows end at the refresh's now(); the aggregate's period ends at now rounded down
to 5 minutes. No run or verdict lies within 10 minutes of either edge, so both windows hold the
same rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text

from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline import steps
from kpictl.services.pipeline.periods import Period
from tests import factories as f


def _period(engine, hours: int) -> Period:
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
    return Period(end - timedelta(hours=hours), end)


def _load(engine, period_end) -> None:
    minute = timedelta(minutes=1)
    with engine.begin() as conn:
        app = f.repository(conn, "acme", "app")
        web = f.repository(conn, "beta", "web")
        old = f.repository(conn, "acme", "legacy", kpi_enabled=False)
        # (repository, status, minutes before the period end, duration in minutes)
        for repo, status, before, duration in (
            (app, "completed", 30, 4),
            (app, "failed", 200, 11),
            (app, "completed", 1000, 7),
            (web, "completed", 500, 3),
            (old, "failed", 700, 9),
            (None, "completed", 900, 2),
            (app, "completed", 3000, 5),  # two days ago: only in the 7-day view
            (web, "failed", 6000, 8),
        ):
            completed = period_end - before * minute
            f.execution(conn, repo, status, completed - duration * minute, completed)
        f.execution(conn, app, "completed", None, period_end - 40 * minute)  # invalid
        for outcome, before in (("accepted", 100), ("overridden", 300), ("accepted", 400)):
            f.verdict(conn, None, outcome, period_end - before * minute)
        f.verdict(conn, None, "unknown", period_end - 500 * minute)


def _snapshots(engine, level: str, period: Period) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kpi_name, scope_id, value FROM kpi_snapshots WHERE level = :level "
                "AND period_start = :start AND period_end = :end"
            ),
            {"level": level, "start": period.start, "end": period.end},
        ).all()
    return {(row.kpi_name, row.scope_id): row.value for row in rows}


def _aggregate(engine, period: Period) -> None:
    pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(), stop=StopRequest()
    )


def test_factory_view_equals_the_factory_snapshots(engine):
    period = _period(engine, 24)
    _load(engine, period.end)
    _aggregate(engine, period)
    factory = _snapshots(engine, "factory", period)
    with engine.connect() as conn:
        view = conn.execute(text("SELECT * FROM mv_factory_kpis_24h")).one()
    assert view.mtti_ms == factory[("mtti", None)]
    assert view.success_rate == factory[("success_rate", None)]
    assert view.runs_per_day == factory[("factory_throughput", None)]
    assert view.steering_accuracy == factory[("steering_accuracy", None)]
    # by hand: six runs in the day (4 + 11 + 7 + 3 + 9 + 2 minutes), four completed
    assert view.mtti_ms == Decimal(6 * 60_000)
    assert view.success_rate_pct == Decimal("66.67") and view.total_executions == 6


def test_product_view_equals_the_product_snapshots(engine):
    period = _period(engine, 168)
    _load(engine, period.end)
    _aggregate(engine, period)
    products = _snapshots(engine, "product", period)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM mv_product_kpis_7d ORDER BY product")).all()
    assert [row.product for row in rows] == ["acme/app", "beta/web"]  # legacy is disabled
    for row in rows:
        scope = row.repository_id
        assert row.success_rate == products[("product_success_rate", scope)]
        assert row.avg_duration_ms == products[("product_avg_duration", scope)]
        assert row.runs_per_day == products[("product_throughput", scope)]
    assert len(products) == 3 * len(rows)
