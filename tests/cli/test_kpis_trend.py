"""`kpictl kpis --trend KPI`: one KPI over time, its same-length windows only, averaged
server-side into as many points as the chart has columns; and the service underneath."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kpictl.services.reports.trends import Point, history
from tests import factories as f
from tests.conftest import run_cli

END = datetime(2026, 1, 10, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def windows(engine):
    """mtti: one-day windows ending 4 .. 0 days before END with 10, 20, 30, 40, 50; a 12-hour
    window (another series) in between; acme/app's success rate on two days."""
    with engine.begin() as conn:
        for days_back, value in enumerate((50, 40, 30, 20, 10)):
            end = END - days_back * DAY
            f.snapshot(conn, "mtti", Decimal(value), end - DAY, end)
        f.snapshot(conn, "mtti", Decimal(999), END - 2 * DAY, END - 2 * DAY + timedelta(hours=12))
        repo = f.repository(conn, "acme", "app")
        for days_back, value in ((0, "80"), (1, "75")):
            end = END - days_back * DAY
            f.snapshot(
                conn,
                "product_success_rate",
                Decimal(value),
                end - DAY,
                end,
                level="product",
                scope_id=repo,
            )
    return repo


def test_the_points_of_one_series_in_json(db_url, windows):
    result = run_cli(
        ["kpis", "--trend", "mtti", "--since", "2026-01-01", "--format", "json"], db_url
    )
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["data"]
    assert [point["value"] for point in points] == [10, 20, 30, 40, 50]
    assert points[-1]["period_end"] == END.isoformat()


def test_the_chart_in_a_pipe(db_url, windows):
    result = run_cli(["kpis", "--trend", "mtti", "--since", "2026-01-01"], db_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "mtti (factory, ms)"
    assert lines[1] == "50 │    •" and lines[10] == "10 │•"
    assert lines[-1] == "2026-01-06 00:00 .. 2026-01-10 00:00 UTC, 5 points"
    assert all(len(line) <= 80 for line in lines)


def test_a_product_trend(db_url, windows):
    args = ["kpis", "--trend", "product_success_rate", "--product", "acme/app", "--format", "csv"]
    result = run_cli([*args, "--since", "2026-01-01"], db_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        "2026-01-09T00:00:00+00:00,75",
        "2026-01-10T00:00:00+00:00,80",
    ]


def test_more_points_than_columns_are_averaged_in_the_database(engine, windows):
    with engine.connect() as conn:
        since = END - 30 * DAY
        assert history(conn, "mtti", level="factory", since=since, points=2) == [
            Point(END - 2 * DAY, Decimal("20")),  # 10, 20, 30
            Point(END, Decimal("45")),  # 40, 50
        ]
        assert history(conn, "mtti", level="factory", since=END - DAY, points=10) == [
            Point(END - DAY, Decimal("40")),
            Point(END, Decimal("50")),
        ]


def test_the_window_most_snapshots_have_is_the_series_not_the_latest_ones(engine, windows):
    with engine.begin() as conn:  # one aggregate cycle's week after five daily buckets
        f.snapshot(
            conn, "mtti", Decimal(777), END + timedelta(hours=1) - 7 * DAY, END + timedelta(hours=1)
        )
    with engine.connect() as conn:
        series = history(conn, "mtti", level="factory", since=END - 30 * DAY, points=10)
    assert [point.value for point in series] == [10, 20, 30, 40, 50]
    with engine.begin() as conn:  # five weeks more: the weekly windows are now the most
        for hours in (2, 3, 4, 5, 6):
            end = END + timedelta(hours=hours)
            f.snapshot(conn, "mtti", Decimal(hours), end - 7 * DAY, end)
    with engine.connect() as conn:
        series = history(conn, "mtti", level="factory", since=END - 30 * DAY, points=10)
    assert [point.value for point in series] == [777, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trend", "nope"], "'nope' is not a factory or product KPI"),
        (["--trend", "run_duration"], "'run_duration' is not a factory or product KPI"),
        (["--trend", "product_success_rate"], "give --product owner/name"),
        (["--trend", "mtti", "--product", "acme/app"], "leave out --product"),
        (["--trend", "mtti", "--format", "prometheus"], "not prometheus"),
        (["--trend", "mtti", "--since", "2026-02-30"], "--since: '2026-02-30' is not a date"),
    ],
)
def test_bad_trends_are_usage_errors(db_url, args, message):
    result = run_cli(["kpis", *args], db_url)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
