"""Hourly parts (revision 0004): a cycle's product and factory values, rolled up from the kept
hours plus the partial hours at the window's edges, equal the values computed from the runs;
late and deleted runs are noticed; the materialized views read the parts and the sources.

Hand-computed fixture, period P = [2026-01-05 00:30, 12:30) UTC (12 h, not on the hour: the
parts cover the full hours 01:00-12:00, the sources the edges 00:30-01:00 and 12:00-12:30).

run  repo  status     started  completed  notes
a1   A     completed  00:00    00:20      before P: excluded
a2   A     completed  00:00    00:40      edge: 2,400,000 ms
a3   A     failed     04:00    05:00      kept hour 04:00: 3,600,000 ms
a4   A     completed  11:00    12:10      edge: 4,200,000 ms
a5   A     completed  12:00    12:40      after P: excluded
a6   A     completed  06:00    05:00      completed_at < started_at: invalid
b1   B     completed  07:00    07:30      disabled repository: factory only, 1,800,000 ms
n1   -     failed     08:00    08:15      no repository: factory only, 900,000 ms

Product A: 2 completed, 1 failed: 66.67 %, 3 / 0.5 d = 6 runs/day, 10,200,000 / 3 = 3,400,000 ms.
Factory: 5 terminal (a2 a3 a4 b1 n1), 3 completed: 60 %, 10 runs/day,
         12,900,000 / 5 = 2,580,000 ms. Verdicts: accepted 00:25 (out) and 00:35 (edge, in),
         overridden 06:00, unknown 06:00, escalated 12:20 (edge, in), accepted 12:31 (out):
         1 / 3 = 33.33 %. One invalid run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline import steps
from kpictl.services.pipeline.periods import Period
from kpictl.services.schema import migrate
from tests import factories as f

P = Period(f.at(0.5), f.at(12.5))
FIVE_MINUTES = timedelta(minutes=5)


def cycle(engine, period: Period, **options) -> pipeline.PipelineResult:
    return pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(**options), stop=StopRequest()
    )


def values(engine, level: str, period: Period) -> dict[tuple[str, object], Decimal | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kpi_name, scope_id, value FROM kpi_snapshots WHERE level = :level "
                "AND period_start = :start AND period_end = :end"
            ),
            {"level": level, "start": period.start, "end": period.end},
        ).all()
    return {(row.kpi_name, row.scope_id): row.value for row in rows}


def load(conn) -> dict[str, object]:
    a = f.repository(conn, "acme", "app")
    b = f.repository(conn, "acme", "old", kpi_enabled=False)
    at = f.at
    ids = {"A": a, "B": b}
    for name, repo, status, started, completed in [
        ("a1", a, "completed", 0, 20 / 60),
        ("a2", a, "completed", 0, 40 / 60),
        ("a3", a, "failed", 4, 5),
        ("a4", a, "completed", 11, 12 + 10 / 60),
        ("a5", a, "completed", 12, 12 + 40 / 60),
        ("a6", a, "completed", 6, 5),
        ("b1", b, "completed", 7, 7.5),
        ("n1", None, "failed", 8, 8.25),
    ]:
        ids[name] = f.execution(conn, repo, status, at(started), at(completed))
    for outcome, hour in [
        ("accepted", 25 / 60),
        ("accepted", 35 / 60),
        ("overridden", 6),
        ("unknown", 6),
        ("escalated", 12 + 20 / 60),
        ("accepted", 12 + 31 / 60),
    ]:
        f.verdict(conn, None, outcome, at(hour))
    return ids


def test_edges_from_the_runs_full_hours_from_the_parts(engine):
    with engine.begin() as conn:
        ids = load(conn)
    result = cycle(engine, P)
    scan = result.parts_scan
    assert scan["full"] is True
    assert scan["hours_to"] == f.at(12).isoformat()
    assert result.invalid_runs == 1

    product = values(engine, "product", P)
    a = ids["A"]
    assert product[("product_success_rate", a)].quantize(Decimal("0.01")) == Decimal("66.67")
    assert product[("product_throughput", a)] == 6
    assert product[("product_avg_duration", a)] == 3_400_000
    assert {scope for _, scope in product} == {a}

    factory = values(engine, "factory", P)
    assert factory[("success_rate", None)] == 60
    assert factory[("factory_throughput", None)] == 10
    assert factory[("mtti", None)] == 2_580_000
    assert factory[("steering_accuracy", None)].quantize(Decimal("0.01")) == Decimal("33.33")

    with engine.connect() as conn:
        # the kept hours reach back 7 days for the views, zero hours included
        kept = conn.execute(
            text("SELECT count(*), min(hour), max(hour) FROM kpi_hourly_totals")
        ).one()
        a3_hour = conn.execute(
            text(
                "SELECT completed, failed, duration_sum_ms FROM kpi_hourly_runs "
                "WHERE hour = :hour AND repository_id = :repo"
            ),
            {"hour": f.at(5), "repo": a},
        ).one()
    assert kept == (168, f.at(12) - timedelta(hours=168), f.at(11))
    assert tuple(a3_hour) == (0, 1, 3_600_000)


def test_next_cycle_notices_late_and_deleted_runs(engine):
    with engine.begin() as conn:
        ids = load(conn)
    cycle(engine, P)
    second = Period(P.start + FIVE_MINUTES, P.end + FIVE_MINUTES)
    with engine.begin() as conn:
        # recorded now, completed hours ago: far behind the 15-minute look-back
        f.execution(conn, ids["A"], "completed", f.at(2), f.at(3))  # 3,600,000 ms
        f.execution(conn, ids["A"], "completed", f.at(12.5), f.at(12.55))  # new: 180,000 ms
    result = cycle(engine, second)
    scan = result.parts_scan
    assert scan["full"] is False
    assert scan["late_from"] == f.at(3).isoformat()
    assert scan["hours_from"] == f.at(3).isoformat()
    product = values(engine, "product", second)[("product_avg_duration", ids["A"])]
    # a2 a3 a4, the late run and the new one: 13,980,000 / 5
    assert product == 2_796_000

    third = Period(second.start + FIVE_MINUTES, second.end + FIVE_MINUTES)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM workflow_executions WHERE id = :id"), {"id": ids["a3"]})
    result = cycle(engine, third)
    assert result.parts_scan["full"] is False
    assert result.parts_scan["late_from"] == f.at(5).isoformat()
    factory = values(engine, "factory", third)
    # a2 a4 b1 n1 and the two new runs: 5 completed of 6 (n1 failed), per 0.5 day
    assert factory[("success_rate", None)].quantize(Decimal("0.01")) == Decimal("83.33")
    assert factory[("factory_throughput", None)] == 12


def test_a_run_recorded_more_than_a_day_late_waits_for_the_hourly_rebuild(engine):
    """Every cycle compares the counts of the last 24 kept hours only (its cost must not grow
    with the window): a run completed 30 hours back is counted by the hourly full rebuild."""
    window = Period(f.at(12.5) - timedelta(hours=48), f.at(12.5))
    with engine.begin() as conn:
        ids = load(conn)
    cycle(engine, window)
    second = Period(window.start + FIVE_MINUTES, window.end + FIVE_MINUTES)
    with engine.begin() as conn:
        f.execution(conn, ids["A"], "completed", f.at(-18), f.at(-17.5))  # 30 h before the end
    result = cycle(engine, second)
    assert result.parts_scan["full"] is False and result.parts_scan["late_from"] is None
    throughput = ("product_throughput", ids["A"])
    assert values(engine, "product", second)[throughput] == 2  # a1-a4 in 2 days: not yet

    third = Period(second.start + FIVE_MINUTES, second.end + FIVE_MINUTES)
    result = cycle(engine, third, full_scan_every=timedelta(0))  # the hourly rebuild
    assert result.parts_scan["full"] is True
    assert values(engine, "product", third)[throughput] == 2.5  # and the late one: 5 in 2 days


def test_a_status_rewritten_in_place_is_caught_by_the_hourly_full_scan(engine):
    with engine.begin() as conn:
        ids = load(conn)
    cycle(engine, P)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE workflow_executions SET status = 'completed' WHERE id = :id"),
            {"id": ids["a3"]},
        )
    second = Period(P.start + FIVE_MINUTES, P.end + FIVE_MINUTES)
    result = cycle(engine, second, full_scan_every=timedelta(0))
    assert result.parts_scan["full"] is True
    assert values(engine, "product", second)[("product_success_rate", ids["A"])] == 100


def test_a_period_ending_before_the_previous_one_rebuilds_the_parts(engine):
    with engine.begin() as conn:
        ids = load(conn)
    cycle(engine, P)
    earlier = Period(P.start - timedelta(hours=1), P.end - timedelta(hours=1))  # [23:30, 11:30)
    result = cycle(engine, earlier)
    assert result.parts_scan["full"] is True
    product = values(engine, "product", earlier)
    # a1 a2 a3 (a4 completes at 12:10, after the period)
    assert product[("product_avg_duration", ids["A"])] == (1_200_000 + 2_400_000 + 3_600_000) / 3


# --- the materialized views ---------------------------------------------------------------


def now_period(engine, hours: int = 24) -> Period:
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
    return Period(end - timedelta(hours=hours), end)


INDEPENDENT_FACTORY = """
SELECT count(*) AS terminal_runs, count(*) FILTER (WHERE status = 'completed') AS completed_runs,
       avg(extract(epoch FROM completed_at - started_at) * 1000) AS mtti_ms
FROM workflow_executions
WHERE status IN ('completed', 'failed') AND started_at IS NOT NULL
  AND completed_at >= started_at
  AND completed_at >= (SELECT period_start FROM mv_factory_kpis_24h)
  AND completed_at < (SELECT period_end FROM mv_factory_kpis_24h)
"""


def test_views_equal_the_runs_and_read_past_the_kept_hours(engine):
    period = now_period(engine)
    with engine.begin() as conn:
        a = f.repository(conn, "acme", "app")
        for minutes in (5, 50, 61, 119, 600, 1300, 1430, 1500, 3000):
            completed = period.end - timedelta(minutes=minutes)
            status = "failed" if minutes % 2 else "completed"
            f.execution(conn, a, status, completed - timedelta(minutes=minutes % 7 + 1), completed)
            f.verdict(conn, None, "accepted" if minutes % 3 else "overridden", completed)
    cycle(engine, period)
    with engine.begin() as conn:
        view = conn.execute(text("SELECT * FROM mv_factory_kpis_24h")).one()
        expected = conn.execute(text(INDEPENDENT_FACTORY)).one()
        assert (view.terminal_runs, view.completed_runs) == tuple(expected[:2])
        assert view.mtti_ms == pytest.approx(expected.mtti_ms, rel=Decimal("1e-12"))
        # the platform refreshes the views itself, later: runs since the last cycle count too
        f.execution(conn, a, "completed", period.end - timedelta(seconds=30), period.end)
    with engine.begin() as conn:
        conn.execute(text("REFRESH MATERIALIZED VIEW mv_factory_kpis_24h"))
        conn.execute(text("REFRESH MATERIALIZED VIEW mv_product_kpis_7d"))
        after = conn.execute(text("SELECT terminal_runs FROM mv_factory_kpis_24h")).scalar_one()
        product = conn.execute(text("SELECT terminal_runs, product FROM mv_product_kpis_7d")).one()
    assert after == expected.terminal_runs + 1
    assert tuple(product) == (10, "acme/app")  # all 9 + the new one, within 7 days


def test_views_keep_owner_grants_and_comment_across_the_revision(engine):
    with engine.begin() as conn:
        conn.execute(text("GRANT SELECT ON mv_product_kpis_7d TO PUBLIC"))
        conn.execute(text("COMMENT ON MATERIALIZED VIEW mv_product_kpis_7d IS 'per product'"))
    facts = (
        "SELECT relacl::text, pg_get_userbyid(relowner), obj_description(oid, 'pg_class') "
        "FROM pg_class WHERE relname = 'mv_product_kpis_7d'"
    )
    with engine.connect() as conn:
        before = conn.execute(text(facts)).one()
    migrate.downgrade(engine, "0003")
    with engine.connect() as conn:
        assert conn.execute(text(facts)).one() == before
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text(facts)).one() == before
        assert conn.execute(text("SELECT to_regclass('kpi_hourly_runs')")).scalar() is not None


# --- any runs, any alignment: rolled up = computed from the runs ----------------------------

BASE = datetime(2026, 3, 2, tzinfo=UTC)
run_strategy = st.tuples(
    st.integers(0, 2),  # repository index (2: none)
    st.sampled_from(["completed", "failed", "cancelled"]),
    st.integers(0, 30 * 60),  # completed_at, minutes after BASE
    st.integers(-5, 120),  # duration in minutes (negative: invalid)
)


def expected_factory(runs, period: Period) -> tuple[int, int, Decimal | None]:
    """(terminal runs, completed runs, duration sum in ms), computed here from the inputs."""
    terminal = [
        run
        for run in runs
        if run[1] != "cancelled"
        and run[3] >= 0
        and period.start <= BASE + timedelta(minutes=run[2]) < period.end
    ]
    completed = sum(1 for run in terminal if run[1] == "completed")
    return len(terminal), completed, sum(run[3] * 60_000 for run in terminal)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.lists(run_strategy, max_size=12),
    late=st.lists(run_strategy, max_size=6),
    offset=st.integers(0, 59),
)
def test_rolled_up_values_equal_the_runs(engine, first, late, offset):
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE workflow_executions, repositories, kpi_snapshots, kpi_aggregation_jobs, "
                "kpi_hourly_runs, kpi_hourly_totals"
            )
        )
        repos = [f.repository(conn, "acme", "a"), f.repository(conn, "acme", "b")]

    def insert(runs) -> None:
        with engine.begin() as conn:
            for repo, status, minute, duration in runs:
                completed = BASE + timedelta(minutes=minute)
                repo_id = repos[repo] if repo < 2 else None
                f.execution(
                    conn, repo_id, status, completed - timedelta(minutes=duration), completed
                )

    # 24-hour periods ending `offset` minutes after an hour, then the next 5-minute cycle
    end = BASE + timedelta(hours=26, minutes=offset)
    period = Period(end - timedelta(hours=24), end)
    insert(first)
    cycle(engine, period)
    check_against_runs(engine, period, first, repos)
    insert(late)
    period = Period(period.start + FIVE_MINUTES, period.end + FIVE_MINUTES)
    result = cycle(engine, period)
    assert result.parts_scan["full"] is False
    check_against_runs(engine, period, first + late, repos)


def check_against_runs(engine, period: Period, runs, repos) -> None:
    """A 24-hour period: throughput = terminal runs."""
    terminal, completed, duration = expected_factory(runs, period)
    factory = values(engine, "factory", period)
    assert factory[("factory_throughput", None)] == terminal
    if terminal:
        success, mtti = factory[("success_rate", None)], factory[("mtti", None)]
        assert float(success) == pytest.approx(100 * completed / terminal, rel=1e-12)
        assert float(mtti) == pytest.approx(duration / terminal, rel=1e-12)
    else:
        assert factory[("mtti", None)] is None
    product = values(engine, "product", period)
    for index, repo in enumerate(repos):
        own = expected_factory([run for run in runs if run[0] == index], period)[0]
        assert product.get(("product_throughput", repo)) == (own or None)
