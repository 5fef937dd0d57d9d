"""`services/reports/trends.py`: the same window moved back, one query; gaps as None; windows of
another length or overlapping ones never mixed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kpictl.services.reports.latest import latest_values
from kpictl.services.reports.trends import trends
from tests import factories as f

END = datetime(2026, 1, 10, tzinfo=UTC)
DAY = timedelta(days=1)


def day_window(conn, kpi: str, days_back: int, value, **scope) -> None:
    end = END - days_back * DAY
    f.snapshot(conn, kpi, value, end - DAY, end, **scope)


def test_daily_windows_with_a_gap_and_noise_around_them(engine):
    with engine.begin() as conn:
        for days_back, value in ((0, "40"), (1, "30"), (3, "10")):  # 2 days back: no snapshot
            day_window(conn, "mtti", days_back, Decimal(value))
        # overlapping or longer windows are other series
        f.snapshot(
            conn, "mtti", Decimal("999"), END - DAY - timedelta(hours=12), END - timedelta(hours=12)
        )
        f.snapshot(conn, "mtti", Decimal("998"), END - 2 * DAY, END - DAY + timedelta(hours=1))
        repo = f.repository(conn, "acme", "app")
        for days_back, value in ((0, "80"), (1, "75")):
            day_window(
                conn,
                "product_success_rate",
                days_back,
                Decimal(value),
                level="product",
                scope_id=repo,
            )
    with engine.connect() as conn:
        factory = latest_values(conn, level="factory")
        product = latest_values(conn, level="product")
        got = trends(conn, factory + product, points=5)
    assert got[("mtti", None)] == [None, Decimal("10"), None, Decimal("30"), Decimal("40")]
    assert got[("product_success_rate", repo)] == [None, None, None, Decimal("75"), Decimal("80")]
    # KPIs never computed have no period, hence no trend
    assert ("success_rate", None) not in got


def test_no_values_no_query(engine):
    with engine.connect() as conn:
        assert trends(conn, []) == {}
