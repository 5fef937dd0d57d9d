"""Every convention of pipeline.md §3 on a hand-computed fixture.

Period P = [2026-01-05 00:00, 12:00) UTC, 12 hours. Repositories: A (acme/app), B (acme/lib),
D (acme/old, kpi_enabled = false).

run  repo  status     started      completed     notes
r1   A     completed  01:00        02:00         3,600,000 ms; tokens 100 + (30+20) = 150;
                                                  calls 3 ok + 1 error = 75 %
r2   A     failed     02:00        02:30         1,800,000 ms; tokens NULL+40 = 40; no calls
r3   A     completed  01-04 23:00  00:00         completes exactly at period_start: included;
                                                  3,600,000 ms; no agent runs; 2 errors = 0 %
r4   A     completed  11:00        12:00         completes exactly at period_end: excluded
r5   B     completed  03:00        03:00:00.5    500 ms; one agent run, all NULL = 0 tokens
r6   -     failed     04:00        05:00         NULL repository: factory only; 3,600,000 ms
r7   D     completed  05:00        05:30         disabled repository: factory only; 1,800,000
r8   A     completed  06:00        05:00         completed_at < started_at: invalid
r9   A     failed     NULL         06:00         invalid
r10  A     completed  06:00        NULL          invalid
r11  A     cancelled  07:00        08:00         no KPI
r12  A     paused / r13 running / r14 pending    no KPI

Run level: run_duration x6, token_usage x3 (r1 150, r2 40, r5 0), tool rate x2 (r1 75, r3 0).
Product A: completed 2 (r1, r3), failed 1 (r2): success 66.67 %, throughput 3 / 0.5 d = 6,
           avg (3.6M + 1.8M + 3.6M) / 3 = 3,000,000 ms.
Product B: 1 completed: success 100 %, throughput 2, avg 500 ms.
Factory:   6 terminal (r1 r2 r3 r5 r6 r7), 4 completed, 2 failed: success 66.67 %,
           throughput 12, mtti = 14,400,500 / 6 = 2,400,083.333 ms.
Verdicts:  accepted at 00:00 (included), 01:00, 02:00, 11:59:59; overridden 03:00;
           escalated 04:00, 04:30; unknown 05:00 x2; accepted with NULL decided_at; accepted at
           12:00 (excluded): 4 / 7 = 57.142857 %.
Empty period [2026-01-06 00:00, 01:00): factory rows NULL except throughput 0; no product rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from kpictl.db.engine import make_engine
from kpictl.services.jobs.stop import StopRequest
from kpictl.services.pipeline import run as pipeline
from kpictl.services.pipeline import steps
from kpictl.services.pipeline.periods import Period
from tests import factories as f
from tests.conftest import test_settings

P = Period(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 5, 12, tzinfo=UTC))
EMPTY = Period(datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 6, 1, tzinfo=UTC))


def at(hours: float) -> datetime:
    return P.start + timedelta(hours=hours)


def load_fixture(conn) -> dict[str, object]:
    a = f.repository(conn, "acme", "app")
    b = f.repository(conn, "acme", "lib")
    d = f.repository(conn, "acme", "old", kpi_enabled=False)
    runs = {
        "r1": f.execution(conn, a, "completed", at(1), at(2)),
        "r2": f.execution(conn, a, "failed", at(2), at(2.5)),
        "r3": f.execution(conn, a, "completed", at(-1), at(0)),
        "r4": f.execution(conn, a, "completed", at(11), at(12)),
        "r5": f.execution(conn, b, "completed", at(3), at(3) + timedelta(milliseconds=500)),
        "r6": f.execution(conn, None, "failed", at(4), at(5)),
        "r7": f.execution(conn, d, "completed", at(5), at(5.5)),
        "r8": f.execution(conn, a, "completed", at(6), at(5)),
        "r9": f.execution(conn, a, "failed", None, at(6)),
        "r10": f.execution(conn, a, "completed", at(6), None),
        "r11": f.execution(conn, a, "cancelled", at(7), at(8)),
        "r12": f.execution(conn, a, "paused", at(7), None),
        "r13": f.execution(conn, a, "running", at(7), None),
        "r14": f.execution(conn, a, "pending", None, None),
    }
    f.agent_run(conn, runs["r1"], total_tokens=100, prompt_tokens=60, completion_tokens=40)
    f.agent_run(conn, runs["r1"], prompt_tokens=30, completion_tokens=20)
    f.agent_run(conn, runs["r2"], completion_tokens=40)
    f.agent_run(conn, runs["r5"])
    f.agent_run(conn, runs["r4"], total_tokens=999)  # outside the period
    for error in (None, None, None, "timeout"):
        f.tool_call(conn, runs["r1"], error)
    f.tool_call(conn, runs["r3"], "boom")
    f.tool_call(conn, runs["r3"], "")  # an empty error text is still an error (not NULL)
    for hours in (0, 1, 2, 12 - 1 / 3600):
        f.verdict(conn, runs["r1"], "accepted", at(hours))
    f.verdict(conn, runs["r1"], "overridden", at(3))
    f.verdict(conn, runs["r2"], "escalated", at(4))
    f.verdict(conn, runs["r2"], "escalated", at(4.5))
    f.verdict(conn, runs["r2"], "unknown", at(5))
    f.verdict(conn, None, "unknown", at(5))
    f.verdict(conn, runs["r2"], "accepted", None)
    f.verdict(conn, runs["r2"], "accepted", at(12))
    return {"A": a, "B": b, "D": d, **runs}


def snapshots(engine, level: str, period: Period | None = None) -> dict:
    query = "SELECT kpi_name, scope_id, value, unit, metadata, job_id FROM kpi_snapshots WHERE level = :level"
    parameters: dict = {"level": level}
    if period is not None:
        query += " AND period_start = :start AND period_end = :end"
        parameters.update(start=period.start, end=period.end)
    with engine.connect() as conn:
        rows = conn.execute(text(query), parameters).all()
    return {(row.kpi_name, row.scope_id): row for row in rows}


def run(engine, period: Period = P) -> pipeline.PipelineResult:
    return pipeline.aggregate(
        engine, period, metadata={}, options=steps.PipelineOptions(), stop=StopRequest()
    )


def rounded(value: Decimal | None, places: int = 6) -> Decimal | None:
    return None if value is None else round(value, places)


def check_fixture_values(engine, ids) -> None:
    run_rows = snapshots(engine, "run")
    durations = {key[1]: row.value for key, row in run_rows.items() if key[0] == "run_duration"}
    assert durations == {
        ids["r1"]: Decimal("3600000"),
        ids["r2"]: Decimal("1800000"),
        ids["r3"]: Decimal("3600000"),
        ids["r5"]: Decimal("500"),
        ids["r6"]: Decimal("3600000"),
        ids["r7"]: Decimal("1800000"),
    }
    tokens = {key[1]: row.value for key, row in run_rows.items() if key[0] == "token_usage"}
    assert tokens == {ids["r1"]: 150, ids["r2"]: 40, ids["r5"]: 0}
    rates = {
        key[1]: row.value for key, row in run_rows.items() if key[0] == "tool_call_success_rate"
    }
    assert {k: rounded(v) for k, v in rates.items()} == {
        ids["r1"]: Decimal("75"),
        ids["r3"]: Decimal("0"),
    }
    assert len(run_rows) == 11

    products = snapshots(engine, "product", P)
    assert {key: rounded(row.value) for key, row in products.items()} == {
        ("product_success_rate", ids["A"]): Decimal("66.666667"),
        ("product_throughput", ids["A"]): Decimal("6"),
        ("product_avg_duration", ids["A"]): Decimal("3000000"),
        ("product_success_rate", ids["B"]): Decimal("100"),
        ("product_throughput", ids["B"]): Decimal("2"),
        ("product_avg_duration", ids["B"]): Decimal("500"),
    }
    parts = products[("product_throughput", ids["A"])].metadata
    assert (parts["completed"], parts["failed"], parts["terminal_runs"]) == (2, 1, 3)
    assert Decimal(str(parts["duration_sum_ms"])) == Decimal("9000000")
    assert products[("product_success_rate", ids["A"])].unit == "percent"

    factory = snapshots(engine, "factory", P)
    assert {key[0]: rounded(row.value) for key, row in factory.items()} == {
        "mtti": Decimal("2400083.333333"),
        "success_rate": Decimal("66.666667"),
        "factory_throughput": Decimal("12"),
        "steering_accuracy": Decimal("57.142857"),
    }
    assert all(key[1] is None for key in factory)
    steering = factory[("steering_accuracy", None)].metadata
    assert (
        steering["accepted"],
        steering["overridden"],
        steering["escalated"],
        steering["decided"],
    ) == (4, 1, 2, 7)
    mtti = factory[("mtti", None)].metadata
    assert (mtti["completed"], mtti["failed"], mtti["terminal_runs"]) == (4, 2, 6)


def test_hand_computed_kpis(engine):
    with engine.begin() as conn:
        ids = load_fixture(conn)
    result = run(engine)
    assert result.status == "completed"
    assert result.invalid_runs == 3
    check_fixture_values(engine, ids)
    assert result.snapshots_created == 11 + 6 + 4
    with engine.connect() as conn:
        job = conn.execute(
            text("SELECT * FROM kpi_aggregation_jobs WHERE id = :id"), {"id": result.job_id}
        ).one()
        job_ids = conn.execute(text("SELECT DISTINCT job_id FROM kpi_snapshots")).scalars().all()
    assert job.status == "completed" and job.snapshots_created == 21
    assert job.metadata["invalid_runs"] == 3
    assert job.metadata["snapshots_per_level"] == {"run": 11, "product": 6, "factory": 4}
    assert [str(j) for j in job_ids] == [result.job_id]


def test_product_and_factory_roll_up_exactly(engine):
    """Factory parts = sum of product parts + runs without an enabled product."""
    with engine.begin() as conn:
        load_fixture(conn)
    run(engine)
    with engine.connect() as conn:
        product_runs = conn.execute(
            text(
                "SELECT sum((metadata->>'terminal_runs')::int) FROM kpi_snapshots "
                "WHERE level = 'product' AND kpi_name = 'product_throughput'"
            )
        ).scalar_one()
    assert product_runs == 4  # A 3 + B 1; r6 (no repository) and r7 (disabled) are factory-only


def test_empty_period_writes_null_factory_values(engine):
    result = run(engine, EMPTY)
    assert result.status == "completed"
    factory = snapshots(engine, "factory", EMPTY)
    assert {key[0]: row.value for key, row in factory.items()} == {
        "mtti": None,
        "success_rate": None,
        "factory_throughput": Decimal("0"),
        "steering_accuracy": None,
    }
    assert snapshots(engine, "product", EMPTY) == {}


def test_rerun_same_period_is_idempotent(engine):
    with engine.begin() as conn:
        ids = load_fixture(conn)
    first = run(engine)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM kpi_snapshots")).scalar_one()
    second = run(engine)
    with engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM kpi_snapshots")).scalar_one()
        product_jobs = (
            conn.execute(text("SELECT DISTINCT job_id FROM kpi_snapshots WHERE level <> 'run'"))
            .scalars()
            .all()
        )
    assert before == after == 21
    assert second.periods[0].run_snapshots == 0  # runs that have snapshots are not redone
    assert [str(j) for j in product_jobs] == [second.job_id]  # updated in place by the rerun
    assert first.job_id != second.job_id
    check_fixture_values(engine, ids)


ZONELESS_SOURCES = """
CREATE TABLE repositories (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), owner text NOT NULL,
    name text NOT NULL, kpi_enabled boolean NOT NULL DEFAULT true,
    created_at timestamp NOT NULL DEFAULT now());
CREATE TABLE workflow_executions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), repository_id uuid,
    status varchar(20) NOT NULL, started_at timestamp, completed_at timestamp,
    created_at timestamp NOT NULL DEFAULT now());
CREATE TABLE agent_runs (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), execution_id uuid NOT NULL,
    prompt_tokens int, completion_tokens int, total_tokens int,
    created_at timestamp NOT NULL DEFAULT now());
CREATE TABLE mcp_tool_calls (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), execution_id uuid NOT NULL,
    error text, created_at timestamp NOT NULL DEFAULT now());
CREATE TABLE verdict_outcomes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), execution_id uuid,
    outcome varchar(20) NOT NULL, decided_at timestamp, created_at timestamp NOT NULL DEFAULT now());
"""


@pytest.mark.parametrize("server_zone", ["UTC", "Pacific/Chatham"])
@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp"])
def test_timestamp_types_and_server_zone_give_identical_results(
    empty_db_url, column_type, server_zone
):
    from kpictl.services.schema import migrate

    engine = make_engine(empty_db_url, test_settings(empty_db_url))
    with engine.begin() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f"ALTER DATABASE \"{database}\" SET timezone = '{server_zone}'"))
        if column_type == "timestamp":
            conn.execute(text(ZONELESS_SOURCES))
    migrate.upgrade(engine, with_sources=True)
    with engine.begin() as conn:
        ids = load_fixture(conn)
    result = run(engine)
    assert result.invalid_runs == 3
    check_fixture_values(engine, ids)
    engine.dispose()


def zoneless_sources(url: str, runs: str):
    """An engine on a migrated database whose source columns are zone-less, holding `runs`
    (VALUES of status, started_at, completed_at)."""
    from kpictl.services.schema import migrate

    engine = make_engine(url, test_settings(url))
    with engine.begin() as conn:
        conn.execute(text(ZONELESS_SOURCES))
        conn.execute(
            text(f"INSERT INTO workflow_executions (status, started_at, completed_at) {runs}")
        )
    migrate.upgrade(engine)
    return engine


def test_source_timezone_for_zoneless_columns(empty_db_url):
    """KPICTL_SOURCE_TIMEZONE: zone-less values are wall-clock times in that zone."""
    engine = zoneless_sources(
        empty_db_url,
        # 2026-01-05 09:00 in Berlin (UTC+1) = 08:00 UTC: inside [00:00, 12:00) UTC
        "VALUES ('completed', '2026-01-05 08:00', '2026-01-05 09:00'), "
        # 12:30 Berlin = 11:30 UTC: inside; 13:00 Berlin = 12:00 UTC: excluded
        "('completed', '2026-01-05 12:00', '2026-01-05 12:30'), "
        "('completed', '2026-01-05 12:00', '2026-01-05 13:00')",
    )
    options = steps.PipelineOptions(source_timezone="Europe/Berlin")
    pipeline.aggregate(engine, P, metadata={}, options=options, stop=StopRequest())
    factory = snapshots(engine, "factory", P)
    assert factory[("factory_throughput", None)].value == Decimal("4")  # 2 runs / 0.5 day
    with engine.connect() as conn:
        starts = (
            conn.execute(
                text(
                    "SELECT period_start FROM kpi_snapshots WHERE level = 'run' ORDER BY period_start"
                )
            )
            .scalars()
            .all()
        )
    assert starts == [datetime(2026, 1, 5, 7, tzinfo=UTC), datetime(2026, 1, 5, 11, tzinfo=UTC)]
    engine.dispose()


def test_a_run_in_the_autumn_dst_fold_is_not_snapshotted_twice(empty_db_url):
    """Zone-less columns in Europe/Berlin: on 2026-10-25 the wall clock shows 02:00-03:00
    twice, and PostgreSQL reads 02:50 as the second pass (CET), 01:50 UTC. A period ending at
    00:55 UTC (02:55 CEST, the first pass) selects the run by its wall clock, while its snapshot
    (period_end 01:50 UTC) lies after the period: a cycle that skipped the per-run probe because
    no snapshot lies inside its range would write the run's key again."""
    engine = zoneless_sources(
        empty_db_url, "VALUES ('completed', '2026-10-25 01:50', '2026-10-25 02:50')"
    )
    options = steps.PipelineOptions(source_timezone="Europe/Berlin")
    day = datetime(2026, 10, 25, tzinfo=UTC)
    first = Period(day - timedelta(hours=12), day + timedelta(hours=12))
    pipeline.aggregate(engine, first, metadata={}, options=options, stop=StopRequest())
    with engine.connect() as conn:
        (ended,) = conn.execute(
            text("SELECT period_end FROM kpi_snapshots WHERE level = 'run'")
        ).scalars()
    assert ended == day + timedelta(hours=1, minutes=50)
    # starts before the first period: a full scan of [10-24 00:00, 10-25 00:55) UTC
    second = Period(day - timedelta(days=1), day + timedelta(minutes=55))
    result = pipeline.aggregate(engine, second, metadata={}, options=options, stop=StopRequest())
    assert result.status == "completed" and result.periods[0].runs == 0
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM kpi_snapshots WHERE level = 'run'")
            ).scalar_one()
            == 1
        )
    engine.dispose()
