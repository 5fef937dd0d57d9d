"""`kpictl aggregate` and `kpictl backfill` through the CLI: idempotency, periods, DST,
bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import run_cli


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM kpi_snapshots")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM kpi_aggregation_jobs")).scalar_one(),
        )


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT level, kpi_name, scope_id, period_start, period_end, value FROM kpi_snapshots "
                "ORDER BY level, kpi_name, scope_id NULLS FIRST, period_start"
            )
        ).all()


def test_aggregate_twice_in_one_slot_writes_the_same_keys(db_url, engine):
    with engine.begin() as conn:
        f.recent_runs(conn)
    first = run_cli(["aggregate", "--align", "1h", "--format", "json"], db_url)
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)["data"]
    assert document["job_status"] == "completed" and document["snapshots_created"] == 5 + 5 + 3 + 4
    before = rows(engine)
    second = run_cli(["aggregate", "--align", "1h"], db_url)
    assert second.exit_code == 0, second.output
    assert rows(engine) == before
    assert counts(engine) == (len(before), 2)


def test_aggregate_logs_the_steps(db_url, engine):
    with engine.begin() as conn:
        f.recent_runs(conn, 2)
    result = run_cli(["aggregate"], db_url)
    for line in (
        "Starting aggregation pipeline",
        "Period: ",
        "Processing 2 run-level aggregations",
        "Processing 1 product-level aggregations",
        "Processing factory-level aggregation",
        "Materialized views refreshed",
        "Aggregation completed: ",
    ):
        assert line in result.stderr
    assert result.stdout.startswith("aggregate completed: ")


def test_json_logs(db_url):
    result = run_cli(["aggregate", "--log-format", "json"], db_url)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    assert any(line["message"] == "Starting aggregation pipeline" for line in lines)


def test_dry_run_writes_nothing(db_url, engine):
    with engine.begin() as conn:
        f.recent_runs(conn, 3)
    result = run_cli(["aggregate", "--dry-run", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["data"]
    assert (document["run_level"], document["product_level"], document["factory_level"]) == (
        3,
        1,
        1,
    )
    assert counts(engine) == (0, 0)


def test_materialized_views_have_real_data(db_url, engine):
    with engine.begin() as conn:
        f.recent_runs(conn, 4)  # 2 completed, 2 failed, durations 1 h
    assert run_cli(["aggregate"], db_url).exit_code == 0
    with engine.connect() as conn:
        factory = conn.execute(text("SELECT * FROM mv_factory_kpis_24h")).one()
        product = conn.execute(text("SELECT * FROM mv_product_kpis_7d")).one()
    assert (factory.terminal_runs, factory.completed_runs, factory.success_rate) == (4, 2, 50)
    assert factory.mtti_ms == 3_600_000
    assert (product.product, product.terminal_runs, product.success_rate) == ("acme/app", 4, 50)
    assert product.avg_duration_ms == 3_600_000


def test_backfill_twice_is_idempotent_and_resumes(db_url, engine):
    with engine.begin() as conn:
        repo = f.repository(conn)
        for day in range(3):
            start = datetime(2026, 1, 5 + day, 10, tzinfo=UTC)
            f.execution(conn, repo, "completed", start, start + timedelta(minutes=30))
    args = ["backfill", "--since", "2026-01-05", "--until", "2026-01-08", "--format", "json"]
    first = run_cli(args, db_url)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["data"]["skipped_buckets"] == 0
    before = rows(engine)
    second = run_cli(args, db_url)
    assert second.exit_code == 0
    assert json.loads(second.stdout)["data"]["skipped_buckets"] == 3
    assert rows(engine) == before
    forced = run_cli([*args, "--force"], db_url)
    assert json.loads(forced.stdout)["data"]["skipped_buckets"] == 0
    assert rows(engine) == before
    # 3 buckets x (1 run + 3 product + 4 factory)
    assert len(before) == 3 * (1 + 3 + 4)
    with engine.connect() as conn:
        job = conn.execute(
            text(
                "SELECT metadata FROM kpi_aggregation_jobs WHERE job_type = 'backfill' ORDER BY started_at LIMIT 1"
            )
        ).scalar_one()
    assert [bucket["runs"] for bucket in job["buckets"]] == [1, 1, 1]


def test_backfill_over_dst_changes(db_url, engine):
    spring = run_cli(
        [
            "backfill",
            "--since",
            "2026-03-28",
            "--until",
            "2026-03-31",
            "--timezone",
            "Europe/Berlin",
        ],
        db_url,
    )
    autumn = run_cli(
        [
            "backfill",
            "--since",
            "2026-10-24",
            "--until",
            "2026-10-27",
            "--timezone",
            "Europe/Berlin",
        ],
        db_url,
    )
    assert spring.exit_code == autumn.exit_code == 0, spring.output + autumn.output
    with engine.connect() as conn:
        periods = conn.execute(
            text(
                "SELECT period_start, period_end FROM kpi_snapshots WHERE kpi_name = 'factory_throughput' "
                "ORDER BY period_start"
            )
        ).all()
    hours = [(end - start).total_seconds() / 3600 for start, end in periods]
    assert hours == [24, 23, 24, 24, 25, 24]
    # Buckets start at local midnight: 23:00 UTC in winter, 22:00 UTC in summer.
    assert periods[0].period_start == datetime(2026, 3, 27, 23, tzinfo=UTC)
    assert periods[2].period_start == datetime(2026, 3, 29, 22, tzinfo=UTC)


def test_hour_and_week_buckets(db_url, engine):
    hour = run_cli(
        [
            "backfill",
            "--since",
            "2026-01-05T10:00",
            "--until",
            "2026-01-05T13:00",
            "--bucket",
            "hour",
        ],
        db_url,
    )
    week = run_cli(
        ["backfill", "--since", "2026-01-07", "--until", "2026-01-08", "--bucket", "week"], db_url
    )
    assert hour.exit_code == week.exit_code == 0
    with engine.connect() as conn:
        starts = (
            conn.execute(
                text(
                    "SELECT period_start FROM kpi_snapshots WHERE kpi_name = 'mtti' ORDER BY period_start"
                )
            )
            .scalars()
            .all()
        )
    assert starts == [
        datetime(2026, 1, 5, 0, tzinfo=UTC),  # the week (Monday) containing 2026-01-07
        datetime(2026, 1, 5, 10, tzinfo=UTC),
        datetime(2026, 1, 5, 11, tzinfo=UTC),
        datetime(2026, 1, 5, 12, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["aggregate", "--period-hours", "0"], "0"),
        (["aggregate", "--period-hours", "-5"], "-5"),
        (["aggregate", "--period-hours", "8761"], "8761"),
        (["aggregate", "--period-hours", "abc"], "abc"),
        (["aggregate", "--align", "soon"], "soon"),
        (["aggregate", "--align", "0"], "0"),
        (["aggregate", "--wait", "abc"], "abc"),
        (["aggregate", "--wait", "-3"], "-3"),
        (["aggregate", "--format", "xml"], "xml"),
        (["backfill", "--since", "yesterday"], "yesterday"),
        (["backfill", "--since", "2026-01-05", "--until", "2026-01-01"], "2026-01-01"),
        (["backfill", "--since", "2026-01-05", "--until", "2026-01-05"], "2026-01-05"),
        (["backfill", "--since", "2026-01-05", "--until", "2999-01-01"], "2999-01-01"),
        (["backfill", "--since", "2026-01-05", "--timezone", "Mars/Olympus"], "Mars/Olympus"),
        (["backfill", "--since", "2026-01-05", "--bucket", "month"], "month"),
        (["backfill", "--since", "2026-02-30"], "2026-02-30"),
        (["backfill"], "--since"),
    ],
)
def test_bad_input_exits_2_names_the_value_writes_nothing(db_url, engine, args, named):
    result = run_cli(args, db_url)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output
    assert counts(engine) == (0, 0)


def test_period_hours_from_environment(db_url):
    result = run_cli(
        ["aggregate", "--dry-run", "--format", "json"],
        db_url,
        env={"KPI_AGGREGATION_PERIOD_HOURS": "6"},
    )
    document = json.loads(result.stdout)["data"]
    start = datetime.fromisoformat(document["period_start"])
    end = datetime.fromisoformat(document["period_end"])
    assert end - start == timedelta(hours=6)
    assert end.minute % 5 == 0 and end.second == 0
    bad = run_cli(["aggregate"], db_url, env={"KPI_AGGREGATION_PERIOD_HOURS": "lots"})
    assert bad.exit_code == 2 and "lots" in bad.output


def test_backfill_recomputes_the_unfinished_current_bucket(db_url, engine):
    today = datetime.now(UTC).date().isoformat()
    first = run_cli(["backfill", "--since", today, "--format", "json"], db_url)
    assert first.exit_code == 0, first.output
    with engine.begin() as conn:
        repo = f.repository(conn)
        now = datetime.now(UTC)
        f.execution(conn, repo, "completed", now - timedelta(seconds=2), now - timedelta(seconds=1))
    second = run_cli(["backfill", "--since", today, "--format", "json"], db_url)
    assert (
        json.loads(second.stdout)["data"]["skipped_buckets"] == 0
    )  # today is not over: recomputed
    with engine.connect() as conn:
        runs = conn.execute(
            text("SELECT value FROM kpi_snapshots WHERE kpi_name = 'factory_throughput'")
        ).scalar_one()
    assert runs == 1  # one run in a one-day bucket: 1 run per day


def test_a_bucket_computed_before_it_was_over_is_computed_again(db_url, engine):
    """Found by the soak: a bucket backfilled while current was skipped ever after, missing the
    runs that completed after that first computation."""
    bucket = ["backfill", "--since", "2026-01-05", "--until", "2026-01-06", "--format", "json"]
    with engine.begin() as conn:
        repo = f.repository(conn)
        f.execution(conn, repo, "completed", f.at(10), f.at(11))
    assert run_cli(bucket, db_url).exit_code == 0
    with engine.begin() as conn:
        # as if that computation ran at 12:00 of the bucket's own day, and a run came later
        conn.execute(text("UPDATE kpi_snapshots SET calculated_at = :at"), {"at": f.at(12)})
        f.execution(conn, repo, "failed", f.at(13), f.at(14))
    again = run_cli(bucket, db_url)
    assert json.loads(again.stdout)["data"]["skipped_buckets"] == 0
    assert json.loads(run_cli(bucket, db_url).stdout)["data"]["skipped_buckets"] == 1  # now settled
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT value FROM kpi_snapshots WHERE kpi_name = 'factory_throughput'")
        ).scalar_one()
    assert value == 2


FAIL_ON = """
CREATE FUNCTION test_refuse_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.level = :level AND NEW.period_start = CAST(:start AS timestamptz) THEN
    RAISE EXCEPTION 'refused by the test';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_snapshot BEFORE INSERT ON kpi_snapshots
  FOR EACH ROW EXECUTE FUNCTION test_refuse_snapshot();
"""


def refuse_snapshots(engine, level: str, start: datetime) -> None:
    sql = FAIL_ON.replace(":level", f"'{level}'").replace(":start", f"'{start.isoformat()}'")
    with engine.begin() as conn:
        conn.execute(text(sql))


def test_a_failed_bucket_is_reported_and_the_others_are_computed(db_url, engine):
    refuse_snapshots(engine, "factory", datetime(2026, 1, 6, tzinfo=UTC))
    result = run_cli(
        ["backfill", "--since", "2026-01-05", "--until", "2026-01-08", "--format", "json"], db_url
    )
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)["data"]
    assert [bucket["period_start"] for bucket in document["failed_buckets"]] == [
        "2026-01-06T00:00:00+00:00"
    ]
    assert "refused by the test" in document["failed_buckets"][0]["error"]
    with engine.connect() as conn:
        starts = (
            conn.execute(
                text("SELECT period_start FROM kpi_snapshots WHERE kpi_name = 'mtti' ORDER BY 1")
            )
            .scalars()
            .all()
        )
        job = conn.execute(text("SELECT status, error FROM kpi_aggregation_jobs")).one()
    assert starts == [datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC)]
    assert job.status == "failed" and job.error == "1 bucket(s) failed"
    # the next run picks up where this one failed (once the cause is gone)
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER test_refuse_snapshot ON kpi_snapshots"))
    again = run_cli(
        ["backfill", "--since", "2026-01-05", "--until", "2026-01-08", "--format", "json"], db_url
    )
    assert again.exit_code == 0 and json.loads(again.stdout)["data"]["skipped_buckets"] == 2


def test_a_database_error_fails_the_job_and_keeps_committed_levels(db_url, engine):
    with engine.begin() as conn:
        f.recent_runs(conn, 3)
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    period_end = datetime.fromtimestamp(int(now.timestamp()) // 300 * 300, UTC)
    refuse_snapshots(engine, "product", period_end - timedelta(hours=24))
    result = run_cli(["aggregate"], db_url)
    assert result.exit_code == 1
    assert "refused by the test" in result.stderr and "Traceback" not in result.output
    with engine.connect() as conn:
        job = conn.execute(text("SELECT status, error FROM kpi_aggregation_jobs")).one()
        levels = dict(
            conn.execute(text("SELECT level, count(*) FROM kpi_snapshots GROUP BY level")).all()
        )
    assert job.status == "failed" and "refused by the test" in job.error
    assert "INSERT INTO" not in job.error  # one line for the operator, not the statement
    # committed before the product step failed: 3 run durations and 3 token usages (every run
    # has one agent run); no product or factory rows
    assert levels == {"run": 6}


def test_the_job_s_duration_is_one_number_everywhere(db_url, engine):
    """What aggregate prints and logs is the job row's duration_ms (the database's clock)."""
    with engine.begin() as conn:
        f.recent_runs(conn)
    result = run_cli(["aggregate", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["data"]
    shown = run_cli(["jobs", "show", printed["job_id"], "--format", "json"], db_url)
    assert json.loads(shown.stdout)["data"]["duration_ms"] == printed["duration_ms"]
    assert f"in {printed['duration_ms']}ms (job {printed['job_id']})" in result.stderr
