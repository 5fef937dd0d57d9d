"""The incremental run level: a cycle checks the runs completed since the previous cycle
(less a look-back), and the whole period again every hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline import steps
from kpictl.services.pipeline.periods import Period
from tests import factories as f


def cycle(engine, period: Period, **options) -> pipeline.PipelineResult:
    return pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(**options), stop=StopRequest()
    )


def run_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM kpi_snapshots WHERE level = 'run'")
        ).scalar_one()


def periods_now() -> tuple[Period, Period]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    first = Period(end - timedelta(hours=24), end)
    return first, Period(first.start + timedelta(minutes=5), first.end + timedelta(minutes=5))


def test_next_cycle_checks_only_recent_runs_then_a_full_scan_catches_late_ones(engine):
    first, second = periods_now()
    with engine.begin() as conn:
        repo = f.repository(conn)
        f.execution(
            conn, repo, "completed", first.end - timedelta(hours=3), first.end - timedelta(hours=2)
        )
    one = cycle(engine, first)
    assert one.run_scan["full"] is True and one.periods[0].runs == 1

    with engine.begin() as conn:
        # completed 2 h before the previous cycle ended, but recorded only now: a late write
        f.execution(
            conn, repo, "completed", first.end - timedelta(hours=4), first.end - timedelta(hours=2)
        )
        # completed just now: the ordinary case
        f.execution(
            conn,
            repo,
            "failed",
            second.end - timedelta(minutes=3),
            second.end - timedelta(minutes=1),
        )
    two = cycle(engine, second)
    assert two.run_scan["full"] is False
    assert datetime.fromisoformat(two.run_scan["from"]) == first.end - timedelta(minutes=15)
    assert two.periods[0].runs == 1  # only the recent run
    # product and factory values always cover the whole period, the late run included
    with engine.connect() as conn:
        terminal = conn.execute(
            text(
                "SELECT (metadata->>'terminal_runs')::int FROM kpi_snapshots WHERE level = 'factory' "
                "AND kpi_name = 'factory_throughput' AND period_end = :end"
            ),
            {"end": second.end},
        ).scalar_one()
    assert terminal == 3

    three = cycle(engine, second, full_scan_every=timedelta(0))  # the hourly full scan is due
    assert three.run_scan["full"] is True and three.periods[0].runs == 1  # the late run
    assert run_rows(engine) == 3


def test_a_longer_period_than_the_previous_cycle_scans_in_full(engine):
    first, _ = periods_now()
    with engine.begin() as conn:
        repo = f.repository(conn)
        f.execution(
            conn, repo, "completed", first.end - timedelta(days=3), first.end - timedelta(days=2)
        )
    cycle(engine, first)  # 24 h: the 2-day-old run is outside
    week = Period(first.end - timedelta(hours=168), first.end)
    result = cycle(engine, week)
    assert result.run_scan["full"] is True and result.periods[0].runs == 1


def test_job_row_records_the_scan(engine):
    first, _ = periods_now()
    result = cycle(engine, first)
    with engine.connect() as conn:
        scan = conn.execute(
            text("SELECT metadata->'run_scan' FROM kpi_aggregation_jobs WHERE id = :id"),
            {"id": result.job_id},
        ).scalar_one()
    assert scan["full"] is True and scan["through"] == first.end.isoformat()
