"""The Python window split (`PartsScan.window`) equals the views' SQL split (`SPANS` of revision
0004): the pipeline and the materialized views read the same full hours from the hourly parts
and the same partial hours from the sources, for any period and any kept range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from kpictl.db.migrations import revision_module
from kpictl.services.pipeline.hourly_parts import PartsScan
from kpictl.services.pipeline.periods import Period

BASE = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _sql_split(conn, spans: str, period: Period) -> tuple[datetime, datetime]:
    row = conn.execute(
        text(
            "WITH bounds AS (SELECT CAST(:start AS timestamptz) AS period_start, "
            f"CAST(:end AS timestamptz) AS period_end), {spans} "
            "SELECT parts_from, parts_to FROM spans"
        ),
        {"start": period.start, "end": period.end},
    ).one()
    return row.parts_from, row.parts_to


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start_minutes=st.integers(min_value=0, max_value=72 * 60),
    length_minutes=st.integers(min_value=1, max_value=72 * 60),
    kept_from_hours=st.integers(min_value=0, max_value=96),
    kept_hours=st.integers(min_value=0, max_value=96),
)
def test_python_and_sql_split_a_window_alike(
    engine, start_minutes, length_minutes, kept_from_hours, kept_hours
):
    spans = revision_module("0004").SPANS
    period = Period(
        BASE + timedelta(minutes=start_minutes),
        BASE + timedelta(minutes=start_minutes + length_minutes),
    )
    covered_from = BASE + kept_from_hours * HOUR
    hours_to = covered_from + kept_hours * HOUR
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kpi_hourly_totals"))
        conn.execute(
            text(
                "INSERT INTO kpi_hourly_totals (hour, executions, verdicts, accepted, "
                "overridden, escalated) SELECT h, 0, 0, 0, 0, 0 FROM generate_series("
                "CAST(:lo AS timestamptz), CAST(:hi AS timestamptz) - interval '1 hour', "
                "interval '1 hour') h"
            ),
            {"lo": covered_from, "hi": hours_to},
        )
        sql = _sql_split(conn, spans, period)
    python = PartsScan(covered_from, hours_to, covered_from, True, BASE).window(period)
    assert sql == python
    if kept_hours == 0:  # nothing kept: everything is read from the sources
        assert sql == (period.end, period.end)
