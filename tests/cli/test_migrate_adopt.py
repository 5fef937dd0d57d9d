"""`kpictl migrate --adopt`: taking over a live AFU-9 database in place (adoption.md).

Every test starts from a fresh copy of the AFU-9 fixture of `tests/afu9.py` (built once per
module, cloned per test). Expected values are literals computed by hand from that fixture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from kpictl.db import migrations
from kpictl.db.engine import make_engine
from kpictl.db.schema import metadata
from tests import afu9
from tests.conftest import libpq, run_cli, test_settings
from tests.repo.test_afu9_standin import VIEW_COLUMNS


@pytest.fixture(scope="module")
def afu9_template(pg_server):
    name = f"afu9_template_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    engine = make_engine(url, test_settings(url))
    # The platform's clock: naive UTC, on a whole minute.
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    with engine.begin() as conn:
        afu9.build_afu9(conn, now)
    engine.dispose()
    yield name, now
    pg_server.drop_database(name)


class Afu9Db:
    def __init__(self, url: str, now: datetime):
        self.url = url
        self.now = now
        self.engine = make_engine(url, test_settings(url))

    def rows(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def fingerprint(self):
        with self.engine.connect() as conn:
            return afu9.fingerprint(conn)

    def adopt(self):
        result = run_cli(["migrate", "--adopt"], self.url)
        assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def db(pg_server, afu9_template):
    template, now = afu9_template
    name = f"a_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template)
    database = Afu9Db(url, now)
    yield database
    database.engine.dispose()
    pg_server.drop_database(name)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


# --- before adoption: detection, and nothing changes ---------------------------------------


def test_plain_migrate_stops_with_the_list_and_changes_nothing(db):
    before = db.fingerprint()
    for args in (["migrate"], ["migrate", "--with-sources"], ["migrate", "--to", "0001"]):
        result = run_cli(args, db.url)
        assert result.exit_code == 1, result.output
        assert "AFU-9 tables found, not adopted" in result.stderr
        assert "remove 5 exact duplicate snapshots" in result.stderr
        assert "mark 2 pending/running jobs of the old scheduler abandoned" in result.stderr
        assert "kpictl migrate --adopt" in result.stderr
        assert "Traceback" not in result.output
    assert db.fingerprint() == before


def test_status_and_doctor_say_what_adoption_would_do(db):
    before = db.fingerprint()
    status = run_cli(["migrate", "--status"], db.url)
    assert status.exit_code == 1
    assert "current: none" in status.stdout
    assert "AFU-9 tables found, not adopted" in status.stdout
    assert "public.v_product_kpi_performance" in status.stdout
    document = json.loads(run_cli(["migrate", "--status", "--format", "json"], db.url).stdout)[
        "data"
    ]
    assert any("remove 5 exact duplicate" in line for line in document["adoption"])
    doctor = run_cli(["doctor", "--format", "json"], db.url)
    assert doctor.exit_code == 1
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["data"]["checks"]}
    assert checks["migrations"]["status"] == "fail"
    assert checks["migrations"]["detail"].startswith("AFU-9 tables found, not adopted")
    assert db.fingerprint() == before


def test_adopt_sql_prints_the_transaction_and_changes_nothing(db):
    before = db.fingerprint()
    result = run_cli(["migrate", "--adopt", "--sql"], db.url)
    assert result.exit_code == 0, result.output
    script, _, later = result.stdout.partition("-- then the later revisions:")
    assert script.count("BEGIN;") == 1 and "\nCOMMIT;" in script
    assert "UPDATE kpictl_alembic_version SET version_num='0003'" in later
    for expected in (
        "LOCK TABLE kpi_snapshots, kpi_aggregation_jobs IN ACCESS EXCLUSIVE MODE;",
        "DROP VIEW public.v_product_kpi_latest;",
        "ALTER COLUMN calculated_at TYPE timestamptz USING calculated_at AT TIME ZONE 'UTC'",
        "DELETE FROM kpi_snapshots k USING",
        "UNIQUE NULLS NOT DISTINCT (level, kpi_name, kpi_version, period_end, scope_id, period_start)",
        "ON CONFLICT ON CONSTRAINT uq_kpi_snapshots_key DO NOTHING",
        "GRANT SELECT ON public.v_product_kpi_performance TO afu9_readonly;",
        "INSERT INTO kpictl_alembic_version (version_num) VALUES ('0002');",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS kpictl_workflow_executions_completed_at",
    ):
        assert expected in script, expected
    assert script.index("COMMIT;") < script.index("CREATE INDEX CONCURRENTLY")
    assert db.fingerprint() == before


def test_bad_inputs_are_usage_errors_and_change_nothing(db):
    before = db.fingerprint()
    for args, named in (
        (["migrate", "--adopt", "--downgrade", "base"], "--downgrade"),
        (["migrate", "--adopt", "--to", "0001"], "--to"),
        (["migrate", "--adopt", "--status"], "--status"),
    ):
        result = run_cli(args, db.url)
        assert result.exit_code == 2, result.output
        assert named in result.stderr and "Traceback" not in result.output
    zone = run_cli(["migrate", "--adopt"], db.url, env={"KPICTL_SOURCE_TIMEZONE": "Mars/Base"})
    assert zone.exit_code == 2 and "'Mars/Base'" in zone.stderr
    assert db.fingerprint() == before


# --- adoption -----------------------------------------------------------------------------------


def test_adopt_keeps_every_row_and_value(db):
    snapshot_count = db.scalar("SELECT count(*) FROM kpi_snapshots")
    job_count = db.scalar("SELECT count(*) FROM kpi_aggregation_jobs")
    assert (snapshot_count, job_count) == (27, 4)
    result = db.adopt()
    assert "removed 5 duplicate snapshots; kept 22" in result.stdout
    assert "abandoned 2 jobs of the old scheduler" in result.stdout
    assert f"migrated: 0002 -> {migrations.head_revision()}" in result.stdout

    assert db.scalar("SELECT count(*) FROM kpi_snapshots") == 27 - 5
    kept = {
        row.id: row
        for row in db.rows(
            "SELECT id, level, kpi_name, kpi_version, scope_id, value, unit, metadata, "
            "calculated_at, period_start, period_end, created_at, job_id FROM kpi_snapshots"
        )
    }
    expected = [row for row in afu9.snapshot_rows(db.now) if row["kept"]]
    assert set(kept) == {row["id"] for row in expected}
    for row in expected:
        actual = kept[row["id"]]
        assert actual.level == row["level"] and actual.kpi_name == row["kpi_name"]
        assert actual.kpi_version == row["kpi_version"] and actual.scope_id == row["scope_id"]
        assert actual.value == (Decimal(row["value"]) if row["value"] else None)
        assert actual.unit == row["unit"] and actual.job_id is None
        assert actual.metadata == (json.loads(row["metadata"]) if row["metadata"] else None)
        for column in ("calculated_at", "period_start", "period_end", "created_at"):
            assert getattr(actual, column) == utc(row[column]), (row["id"], column)

    jobs = {row.id: row for row in db.rows("SELECT * FROM kpi_aggregation_jobs")}
    assert {jobs[job].status for job in (afu9.JOB_PENDING, afu9.JOB_STUCK)} == {"abandoned"}
    assert jobs[afu9.JOB_PENDING].error.startswith("abandoned: left pending by the AFU-9")
    assert (jobs[afu9.JOB_DONE].status, jobs[afu9.JOB_DONE].snapshots_created) == ("completed", 12)
    assert (jobs[afu9.JOB_FAILED].status, jobs[afu9.JOB_FAILED].error) == ("failed", "timeout")
    day = datetime(db.now.year, db.now.month, db.now.day, tzinfo=UTC) - timedelta(days=3)
    assert jobs[afu9.JOB_DONE].started_at == day + timedelta(days=1)
    assert jobs[afu9.JOB_DONE].period_start == day - timedelta(days=1)
    adopt_jobs = [job for job in jobs.values() if job.job_type == "adopt"]
    assert len(adopt_jobs) == 1 and adopt_jobs[0].status == "completed"
    assert adopt_jobs[0].metadata["duplicates_removed"] == 5
    assert adopt_jobs[0].metadata["duplicates_by_level"] == {"factory": 1, "product": 2, "run": 2}
    assert adopt_jobs[0].metadata["jobs_abandoned"] == 2
    assert f"adopt job: {adopt_jobs[0].id}" in result.stdout


def test_adopted_schema_is_kpictls(db):
    db.adopt()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_object": lambda obj, name, type_, reflected, compare_to: (
                    type_ != "table" or name in metadata.tables
                ),
                "compare_server_default": True,
            },
        )
        diff = compare_metadata(context, metadata)
    # AFU-9's indexes that kpictl's do not make redundant stay (the platform may read by them).
    kept_indexes = {
        "idx_kpi_snapshots_name_time",
        "idx_kpi_snapshots_scope",
        "idx_kpi_snapshots_period",
        "idx_kpi_snapshots_version",
        "idx_kpi_jobs_started_at",
    }
    assert {entry[1].name for entry in diff if entry[0] == "remove_index"} == kept_indexes
    assert [entry for entry in diff if entry[0] != "remove_index"] == []
    assert db.scalar("SELECT version_num FROM kpictl_alembic_version") == migrations.head_revision()
    valid_source_indexes = db.rows(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname LIKE 'kpictl\\_%' AND i.indisvalid AND c.relname <> 'kpictl_alembic_version_pkc' "
        "ORDER BY 1"
    )
    assert [row[0] for row in valid_source_indexes] == [
        "kpictl_agent_runs_execution_id",
        "kpictl_mcp_tool_calls_execution_id",
        "kpictl_verdict_outcomes_decided_cover",
        "kpictl_workflow_executions_completed_cover",
        "kpictl_workflow_executions_open_started_at",
        "kpictl_workflow_executions_running_started_at",
    ]
    assert db.scalar(
        "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'kpi_history'"
    )


def test_platform_views_return_the_same_rows_with_owner_and_grant(db):
    query = (
        "SELECT product_key, kpi_name, actual_value, unit, target_value, meets_target, "
        "calculated_at::text AS calculated_at, period_start::text AS period_start "
        "FROM v_product_kpi_performance ORDER BY 1, 2, 7, 3"
    )
    acl = "SELECT relacl::text, pg_get_userbyid(relowner), obj_description(oid, 'pg_class') FROM pg_class WHERE relname = :name"
    before = db.rows(query)
    acl_before = {
        name: db.rows(acl, name=name)
        for name in ("v_product_kpi_performance", "v_product_kpi_latest", "mv_factory_kpis_24h")
    }
    latest_before = db.rows(
        "SELECT product_key, kpi_name, actual_value FROM v_product_kpi_latest ORDER BY 1, 2"
    )
    db.adopt()
    after = db.rows(query)
    # Duplicates are gone (2 of product_success_rate for acme/app); the rest is the same, the
    # timestamps now instants printed with their offset.
    assert len(after) == len(before) - 2
    kept = [
        row
        for row in before
        if row.kpi_name != "product_success_rate"
        or row.actual_value == Decimal("81.2500")
        or row.product_key != "acme/app"
    ]
    assert [tuple(row[:6]) for row in after] == [tuple(row[:6]) for row in kept]
    assert [row.calculated_at for row in after] == [row.calculated_at + "+00" for row in kept]
    # the product's target of 90 %: 81.25 meets it by the platform's `value <= target` rule
    target = next(row for row in after if row.kpi_name == "product_success_rate")
    assert (target.target_value, target.meets_target) == (Decimal(90), True)
    for name, rows in acl_before.items():
        assert db.rows(acl, name=name) == rows, name
    assert "afu9_readonly=r/afu9_app" in acl_before["v_product_kpi_performance"][0][0]
    assert (
        db.rows(
            "SELECT product_key, kpi_name, actual_value FROM v_product_kpi_latest ORDER BY 1, 2"
        )
        == latest_before
    )
    with db.engine.connect() as conn:
        conn.execute(text(f"SET ROLE {afu9.READER_ROLE}"))
        assert conn.execute(text("SELECT count(*) FROM v_product_kpi_performance")).scalar() == 4
        conn.execute(text("SELECT count(*) FROM mv_factory_kpis_24h")).scalar()
        conn.rollback()


FRESHNESS_SHAPE = (
    "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_proc p, "
    "unnest(p.proargnames, p.proallargtypes, p.proargmodes::text[]) "
    "WITH ORDINALITY AS a(attname, atttypid, mode, n) "
    "WHERE p.oid = to_regprocedure(:signature) AND a.mode = 't' ORDER BY a.n"
)


def _function_shape(db, signature):
    return (
        db.scalar("SELECT pg_get_function_result(to_regprocedure(:s))", s=signature),
        [tuple(row) for row in db.rows(FRESHNESS_SHAPE, signature=signature)],
    )


def test_platform_functions_keep_their_columns_types_and_rows(db):
    freshness = "SELECT * FROM get_kpi_freshness(NULL) ORDER BY kpi_name"
    one = "SELECT * FROM get_kpi_freshness('mtti')"
    accuracy = "SELECT * FROM calculate_steering_accuracy(24)"
    shapes = {
        signature: _function_shape(db, signature)
        for signature in ("get_kpi_freshness(varchar)", "calculate_steering_accuracy(integer)")
    }
    before = {query: db.rows(query) for query in (freshness, one, accuracy)}
    with db.engine.connect() as conn:
        columns_before = {query: list(conn.execute(text(query)).keys()) for query in before}
    db.adopt()
    for signature, shape in shapes.items():
        assert _function_shape(db, signature) == shape, signature
    assert shapes["get_kpi_freshness(varchar)"][1] == [
        ("kpi_name", "character varying"),
        ("freshness_seconds", "numeric"),
        ("last_calculated_at", "timestamp without time zone"),
    ]
    with db.engine.connect() as conn:
        for query, columns in columns_before.items():
            assert list(conn.execute(text(query)).keys()) == columns, query
    after = {query: db.rows(query) for query in before}
    # Same factory KPI names, same zone-less newest calculated_at (the duplicates adoption
    # removed were older); the age moved on by the seconds the test took.
    for query in (freshness, one):
        assert [(row.kpi_name, row.last_calculated_at) for row in after[query]] == [
            (row.kpi_name, row.last_calculated_at) for row in before[query]
        ]
        assert all(
            0 <= new.freshness_seconds - old.freshness_seconds < 60
            for new, old in zip(after[query], before[query], strict=True)
        )
    assert [row.kpi_name for row in after[freshness]] == [
        "factory_throughput",
        "mtti",
        "steering_accuracy",
        "success_rate",
    ]
    mtti = next(row for row in afu9.snapshot_rows(db.now) if row["id"] == afu9.uid(0x301))
    assert after[one][0].last_calculated_at == mtti["calculated_at"]
    assert [tuple(row) for row in after[accuracy]] == [(Decimal("50.00"), 4, 2, 1, 0)]
    assert after[accuracy] == before[accuracy]
    with db.engine.begin() as conn:
        conn.execute(text("SELECT refresh_kpi_materialized_views()"))
    assert db.scalar("SELECT terminal_runs FROM mv_factory_kpis_24h") == 4


def test_a_freshness_function_of_another_column_order_is_converted_too(db):
    """Adoption decides from the catalog, not from one text of the original."""
    with db.engine.begin() as conn:
        conn.execute(text("DROP FUNCTION get_kpi_freshness(varchar)"))
        conn.execute(
            text(
                "CREATE FUNCTION get_kpi_freshness(p_kpi_name varchar DEFAULT NULL) RETURNS TABLE "
                "(kpi_name varchar, last_calculated_at timestamp, freshness_seconds numeric) "
                "LANGUAGE sql AS $$ SELECT ks.kpi_name::varchar, max(ks.calculated_at), "
                "extract(epoch FROM now() - max(ks.calculated_at)) FROM kpi_snapshots ks "
                "WHERE ks.level = 'factory' GROUP BY 1 $$"
            )
        )
    before = db.rows("SELECT kpi_name, last_calculated_at FROM get_kpi_freshness() ORDER BY 1")
    db.adopt()
    after = db.rows("SELECT * FROM get_kpi_freshness() ORDER BY 1")
    assert [(row[0], row[1]) for row in after] == [tuple(row) for row in before]
    assert list(after[0]._fields) == ["kpi_name", "last_calculated_at", "freshness_seconds"]


def test_a_function_returning_a_zoneless_kpi_timestamp_is_named_in_the_refusal(db):
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION kpi_last_update() RETURNS timestamp LANGUAGE sql "
                "AS $$ SELECT max(calculated_at) FROM kpi_snapshots $$"
            )
        )
    before = db.fingerprint()
    result = run_cli(["migrate", "--adopt"], db.url)
    assert result.exit_code == 1, result.output
    assert "function kpi_last_update() reads the KPI tables" in result.stderr
    assert "drop kpi_last_update()" in result.stderr and "Traceback" not in result.output
    assert db.fingerprint() == before


def test_platform_trigger_writes_and_never_fails_the_update(db):
    db.adopt()
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE workflow_executions SET status = 'completed', completed_at = now() "
                "WHERE id = :id"
            ),
            {"id": afu9.RUN_RUNNING},
        )
    run_rows = (
        "SELECT kpi_name, value, unit, period_start, period_end, metadata, job_id "
        "FROM kpi_snapshots WHERE scope_id = :id ORDER BY kpi_name"
    )
    rows = db.rows(run_rows, id=afu9.RUN_RUNNING)
    assert [(row.kpi_name, row.unit) for row in rows] == [
        ("run_duration", "ms"),
        ("run_success", "boolean"),
    ]
    duration, success = rows
    assert duration.period_start == utc(db.now - timedelta(hours=1))
    assert (
        duration.value
        == Decimal((duration.period_end - duration.period_start) / timedelta(microseconds=1)) / 1000
    )
    assert duration.value > 3_600_000 - 60_000  # started an hour ago
    assert success.value == 1 and duration.metadata is None and duration.job_id is None
    # A second transition of the same run: the same keys again, and the UPDATE still succeeds.
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE workflow_executions SET status = 'failed' WHERE id = :id"),
            {"id": afu9.RUN_RUNNING},
        )
        conn.execute(
            text("UPDATE workflow_executions SET status = 'running' WHERE id = :id"),
            {"id": afu9.RUN_RUNNING},
        )
        conn.execute(
            text("UPDATE workflow_executions SET status = 'completed' WHERE id = :id"),
            {"id": afu9.RUN_RUNNING},
        )
    assert db.rows(run_rows, id=afu9.RUN_RUNNING) == rows
    # A platform session in another time zone: the zone-less values still read as UTC.
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL TimeZone = 'America/New_York'"))
        conn.execute(
            text("UPDATE workflow_executions SET status = 'failed' WHERE id = :id"),
            {"id": afu9.RUN_CANCELLED},
        )
    cancelled = db.rows(run_rows, id=afu9.RUN_CANCELLED)
    assert [(row.kpi_name, row.value) for row in cancelled] == [
        ("run_duration", Decimal(60000)),
        ("run_success", Decimal(0)),
    ]
    assert cancelled[0].period_start == utc(db.now - timedelta(hours=6))
    # kpictl's own run level then finds the trigger's row and writes the same row on its key:
    # one row per key, the same value, unit and period, now with kpictl's job.
    assert run_cli(["aggregate", "--period-hours", "24"], db.url).exit_code == 0
    after = db.rows(run_rows, id=afu9.RUN_CANCELLED)
    assert [row[:6] for row in after] == [row[:6] for row in cancelled]
    assert after[0].job_id is not None and after[1].job_id is None  # run_success: the platform's
    # A run kpictl counts as invalid: the platform's UPDATE succeeds and nothing is written
    # (the original trigger failed this UPDATE on its NOT NULL period_end).
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workflow_executions (id, status, started_at) "
                "VALUES (:a, 'running', now()), (:b, 'running', now())"
            ),
            {"a": afu9.uid(0x1A0), "b": afu9.uid(0x1A1)},
        )
        conn.execute(
            text("UPDATE workflow_executions SET status = 'completed' WHERE id = :a"),
            {"a": afu9.uid(0x1A0)},
        )
        conn.execute(
            text(
                "UPDATE workflow_executions SET status = 'failed', "
                "completed_at = started_at - interval '1 minute' WHERE id = :b"
            ),
            {"b": afu9.uid(0x1A1)},
        )
    assert (
        db.scalar(
            "SELECT count(*) FROM kpi_snapshots WHERE scope_id IN (:a, :b)",
            a=afu9.uid(0x1A0),
            b=afu9.uid(0x1A1),
        )
        == 0
    )


# The factory KPIs of a period over the platform's zone-less UTC rows, computed here by SQL of
# the test's own, independent of kpictl's statements (pipeline.md §3).
INDEPENDENT_FACTORY = """
WITH runs AS (
  SELECT status, extract(epoch FROM completed_at - started_at) * 1000 AS duration
  FROM workflow_executions
  WHERE status IN ('completed', 'failed') AND started_at IS NOT NULL
    AND completed_at IS NOT NULL AND completed_at >= started_at
    AND completed_at >= CAST(:start AS timestamptz) AT TIME ZONE 'UTC'
    AND completed_at < CAST(:end AS timestamptz) AT TIME ZONE 'UTC'
), verdicts AS (
  SELECT outcome FROM verdict_outcomes
  WHERE outcome IN ('accepted', 'overridden', 'escalated')
    AND decided_at >= CAST(:start AS timestamptz) AT TIME ZONE 'UTC'
    AND decided_at < CAST(:end AS timestamptz) AT TIME ZONE 'UTC'
)
SELECT (SELECT avg(duration) FROM runs) AS mtti,
       (SELECT 100.0 * count(*) FILTER (WHERE status = 'completed') / count(*) FROM runs)
         AS success_rate,
       (SELECT count(*) / (extract(epoch FROM CAST(:end AS timestamptz)
                                              - CAST(:start AS timestamptz)) / 86400) FROM runs)
         AS factory_throughput,
       (SELECT 100.0 * count(*) FILTER (WHERE outcome = 'accepted') / count(*) FROM verdicts)
         AS steering_accuracy
"""


def test_after_adoption_everything_works_in_order(db):
    """Issue 11, item 4: on the same database, in this order."""
    kept_ids = {row["id"] for row in afu9.snapshot_rows(db.now) if row["kept"]}
    db.adopt()
    result = run_cli(["aggregate", "--period-hours", "168"], db.url)
    assert result.exit_code == 0, result.output
    job = db.rows(
        "SELECT id, period_start, period_end FROM kpi_aggregation_jobs "
        "WHERE job_type = 'aggregate' AND status = 'completed'"
    )
    assert len(job) == 1
    factory = dict(
        db.rows(
            "SELECT kpi_name, value FROM kpi_snapshots WHERE level = 'factory' AND job_id = :job",
            job=job[0].id,
        )
    )
    expected = db.rows(INDEPENDENT_FACTORY, start=job[0].period_start, end=job[0].period_end)[0]
    assert factory == dict(expected._mapping)
    # by hand: six terminal runs in the week (A1 10 min, A2 20, B1 30, the run without a
    # repository 4, OLD7 5, OLD8 2), four completed; accepted 3 of 4 decided verdicts.
    assert factory["mtti"] == Decimal(710000)
    assert round(factory["success_rate"], 6) == Decimal("66.666667")
    assert round(factory["factory_throughput"], 6) == Decimal("0.857143")
    assert factory["steering_accuracy"] == Decimal(75)

    again = run_cli(["migrate", "--adopt"], db.url)
    assert again.exit_code == 0 and "nothing to adopt (already adopted)" in again.stdout
    doctor = run_cli(["doctor"], db.url)
    assert doctor.exit_code == 0, doctor.output

    # the platform's functions, trigger, views and grants
    assert [row.kpi_name for row in db.rows("SELECT * FROM get_kpi_freshness(NULL)")] != []
    assert db.rows("SELECT * FROM calculate_steering_accuracy(24)")[0].total_decisions == 4
    with db.engine.begin() as conn:
        conn.execute(text("SELECT refresh_kpi_materialized_views()"))
        conn.execute(
            text(
                "UPDATE workflow_executions SET status = 'completed', completed_at = started_at "
                "+ interval '90 seconds' WHERE id = :id"
            ),
            {"id": afu9.RUN_RUNNING},
        )
    assert db.rows(
        "SELECT kpi_name, value, unit FROM kpi_snapshots WHERE scope_id = :id ORDER BY 1",
        id=afu9.RUN_RUNNING,
    ) == [("run_duration", Decimal(90000), "ms"), ("run_success", Decimal(1), "boolean")]
    with db.engine.connect() as conn:
        conn.execute(text(f"SET ROLE {afu9.READER_ROLE}"))
        assert conn.execute(text("SELECT count(*) FROM v_product_kpi_performance")).scalar() >= 4
        assert conn.execute(text("SELECT total_executions FROM mv_factory_kpis_24h")).scalar()
        conn.rollback()

    jobs = dict(db.rows("SELECT id, status FROM kpi_aggregation_jobs"))
    assert (jobs[afu9.JOB_PENDING], jobs[afu9.JOB_STUCK]) == ("abandoned", "abandoned")
    assert (jobs[afu9.JOB_DONE], jobs[afu9.JOB_FAILED]) == ("completed", "failed")
    remaining = {row[0] for row in db.rows("SELECT id FROM kpi_snapshots")}
    assert kept_ids <= remaining
    assert len(kept_ids) == afu9.SNAPSHOT_ROWS - afu9.DUPLICATES_REMOVED


def test_platform_dashboard_queries_read_kpictls_values(db):
    db.adopt()
    for view, columns in VIEW_COLUMNS.items():
        if not view.startswith("mv_"):
            continue
        actual = dict(
            db.rows(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = CAST(:view AS regclass) AND a.attnum > 0",
                view=view,
            )
        )
        for name, type_ in columns:
            # zone-less window bounds are instants now (timestamptz), like every kpictl column
            assert actual[name] == type_.replace("without", "with"), (view, name)
    with db.engine.connect() as conn:
        conn.execute(text(f"SET ROLE {afu9.READER_ROLE}"))
        factory = conn.execute(
            text(
                "SELECT success_rate_pct, total_executions, running_executions "
                "FROM mv_factory_kpis_24h"
            )
        ).one()
        products = conn.execute(
            text("SELECT product_name, success_rate_pct FROM mv_product_kpis_7d ORDER BY 1")
        ).all()
        conn.rollback()
    # the last 24 h: A1, A2, B1 and the run without a repository are terminal, 3 completed;
    # the running run started an hour ago
    assert tuple(factory) == (Decimal("75.00"), 4, 1)
    # kpi_enabled repositories in the week: acme/app A1, A2, OLD7 (2 of 3 completed),
    # beta/web OLD8 (failed); acme/legacy is disabled
    assert [tuple(row) for row in products] == [
        ("acme/app", Decimal("66.67")),
        ("beta/web", Decimal("0.00")),
    ]


def test_the_platforms_service_still_inserts_snapshots(db):
    db.adopt()
    with db.engine.connect() as conn:
        conn.execute(text(f"SET ROLE {afu9.SERVICE_ROLE}"))
        row = conn.execute(
            text(
                "INSERT INTO kpi_snapshots (kpi_name, kpi_version, level, scope_id, value, unit, "
                "metadata, calculated_at, period_start, period_end) VALUES ('success_rate', "
                "'1.0.0', 'factory', NULL, 80.5, 'percent', '{\"source\": \"node\"}', NOW(), "
                "'2026-01-01 00:00:00', '2026-01-02 00:00:00') "
                "RETURNING id, kpi_name, value, calculated_at, created_at"
            )
        ).one()
        conn.commit()
    assert row.kpi_name == "success_rate" and row.value == Decimal("80.5")
    assert row.created_at is not None


def test_adoption_ends_partitioned_with_the_tables_grants_and_views(db):
    """Revision 0008 runs after the adoption: the platform's table becomes the partitioned one
    with its grants, and the platform's view over it (and the site's view over that) are
    recreated with their owners (revision 0008, `kpictl/db/snapshot_conversion.py`)."""
    acl = "SELECT relacl::text, pg_get_userbyid(relowner) FROM pg_class WHERE relname = :name"
    table_acl = db.rows(acl, name="kpi_snapshots")
    db.adopt()
    assert db.scalar("SELECT relkind::text FROM pg_class WHERE relname = 'kpi_snapshots'") == "p"
    assert db.rows(acl, name="kpi_snapshots") == table_acl
    for view in ("v_product_kpi_performance", "v_product_kpi_latest"):
        assert (
            db.scalar("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = :n", n=view)
            == afu9.APP_ROLE
        )
    # the platform's own indexes came along, on the partitioned table
    assert db.scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'kpi_snapshots'") >= 5


def test_aggregate_and_freshness_after_adoption(db):
    db.adopt()
    result = run_cli(["aggregate", "--period-hours", "24"], db.url)
    assert result.exit_code == 0, result.output
    factory = dict(
        db.rows(
            "SELECT kpi_name, value FROM kpi_snapshots WHERE level = 'factory' "
            "AND job_id IS NOT NULL"
        )
    )
    # Terminal runs in the last 24 h: A1 completed 10 min, A2 failed 20 min, B1 (disabled
    # repository) completed 30 min, the run without repository completed 4 min.
    assert factory["mtti"] == Decimal(960000)  # (600000 + 1200000 + 1800000 + 240000) / 4
    assert factory["success_rate"] == Decimal(75)  # 3 of 4
    assert factory["factory_throughput"] == Decimal(4)  # 4 runs / 1 day
    # accepted 2 / (accepted 2 + overridden 1); unknown and undecided left out
    assert round(factory["steering_accuracy"], 6) == Decimal("66.666667")
    product = {
        (row.scope_id, row.kpi_name): row.value
        for row in db.rows(
            "SELECT scope_id, kpi_name, value FROM kpi_snapshots WHERE level = 'product' "
            "AND job_id IS NOT NULL"
        )
    }
    assert product == {
        (afu9.REPO_A, "product_success_rate"): Decimal(50),
        (afu9.REPO_A, "product_throughput"): Decimal(2),
        (afu9.REPO_A, "product_avg_duration"): Decimal(900000),
    }
    # The trigger's run_duration row and kpictl's share one key: still one row per run.
    assert (
        db.scalar(
            "SELECT count(*) FROM kpi_snapshots WHERE kpi_name = 'run_duration' AND scope_id = :id",
            id=afu9.RUN_A1,
        )
        == 1
    )
    assert db.scalar("SELECT product FROM mv_product_kpis_7d") == "acme/app"
    freshness = run_cli(["freshness", "--format", "json"], db.url)
    assert freshness.exit_code == 0, freshness.output
    statuses = {row["kpi_name"]: row["status"] for row in json.loads(freshness.stdout)["data"]}
    assert statuses == {
        "mtti": "fresh",
        "success_rate": "fresh",
        "factory_throughput": "fresh",
        "steering_accuracy": "fresh",
    }


def test_adopting_twice_is_a_noop(db):
    db.adopt()
    after_first = db.fingerprint()
    second = db.adopt()
    assert "nothing to adopt (already adopted)" in second.stdout
    assert db.fingerprint() == after_first
    assert run_cli(["migrate"], db.url).exit_code == 0
    assert run_cli(["migrate", "--adopt", "--sql"], db.url).stdout.startswith(
        "-- kpictl: nothing to adopt (already adopted)"
    )
    assert db.fingerprint() == after_first
    assert run_cli(["doctor"], db.url).stdout.count("AFU-9") == 0


@pytest.mark.parametrize("step", ["kpi_snapshots", "recreate-views", "check"])
def test_interrupted_adoption_leaves_the_database_as_before(db, step):
    before = db.fingerprint()
    result = run_cli(["migrate", "--adopt"], db.url, env={"KPICTL_DEBUG_ADOPT_FAIL_AT": step})
    assert result.exit_code == 1, result.output
    assert f"interrupted after step {step!r}" in result.stderr
    assert db.fingerprint() == before


def test_adoption_failing_on_a_conflicting_object_changes_nothing(db):
    with db.engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_kpi_snapshots_job_id ON repositories (name)"))
    before = db.fingerprint()
    result = run_cli(["migrate", "--adopt"], db.url)
    assert result.exit_code == 1
    assert "ix_kpi_snapshots_job_id" in result.stderr and "Traceback" not in result.output
    assert db.fingerprint() == before


def test_downgrade_below_adoption_is_refused(db):
    db.adopt()
    adopted = db.fingerprint()
    for target in ("base", "0001"):
        result = run_cli(["migrate", "--downgrade", target], db.url)
        assert result.exit_code == 1, result.output
        assert f"refusing to downgrade to {target}" in result.stderr
        assert "one-way" in result.stderr and "backup" in result.stderr
    assert db.fingerprint() == adopted


def test_adopt_on_a_kpictl_database_only_migrates(db_url):
    result = run_cli(["migrate", "--adopt"], db_url)
    assert result.exit_code == 0, result.output
    assert "nothing to adopt" in result.stdout
    head = migrations.head_revision()
    assert f"migrated: {head} -> {head}" in result.stdout


def test_aggregate_computes_run_kpis_of_runs_the_trigger_already_wrote(db):
    db.adopt()
    assert run_cli(["aggregate", "--period-hours", "24"], db.url).exit_code == 0
    run_kpis = dict(
        db.rows(
            "SELECT kpi_name, value FROM kpi_snapshots WHERE scope_id = :id AND level = 'run'",
            id=afu9.RUN_A1,
        )
    )
    # planner: 100 + 50 (total NULL); coder: total 1000. 3 of 4 tool calls without error.
    assert run_kpis.get("token_usage") == Decimal(1150)
    assert run_kpis.get("tool_call_success_rate") == Decimal(75)


def test_zoneless_values_read_in_the_source_timezone(db):
    env = {"KPICTL_SOURCE_TIMEZONE": "Europe/Berlin"}
    result = run_cli(["migrate", "--adopt"], db.url, env=env)
    assert result.exit_code == 0, result.output
    row = next(r for r in afu9.snapshot_rows(db.now) if r["id"] == afu9.uid(0x309))
    berlin = ZoneInfo("Europe/Berlin")
    assert db.scalar("SELECT calculated_at FROM kpi_snapshots WHERE id = :id", id=row["id"]) == row[
        "calculated_at"
    ].replace(tzinfo=berlin)
    # The trigger reads the platform's zone-less values the same way.
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE workflow_executions SET status = 'failed' WHERE id = :id"),
            {"id": afu9.RUN_CANCELLED},
        )
    assert db.scalar(
        "SELECT period_start FROM kpi_snapshots WHERE scope_id = :id AND kpi_name = 'run_duration'",
        id=afu9.RUN_CANCELLED,
    ) == (db.now - timedelta(hours=6)).replace(tzinfo=berlin)


def test_json_output_and_the_adopt_job_in_kpictl_jobs(db):
    result = run_cli(["migrate", "--adopt", "--format", "json"], db.url)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)["data"]
    assert document["adoption"]["adopted"] is True
    assert document["adoption"]["duplicates_removed"] == 5
    assert document["adoption"]["duplicates_by_level"] == {"factory": 1, "product": 2, "run": 2}
    assert (document["before"], document["after"]) == ("0002", migrations.head_revision())
    listed = run_cli(["jobs", "--type", "adopt", "--format", "json"], db.url)
    jobs = json.loads(listed.stdout)["data"]
    assert [(job["job_type"], job["status"]) for job in jobs] == [("adopt", "completed")]
    assert jobs[0]["id"] == document["adoption"]["job_id"]
    again = json.loads(run_cli(["migrate", "--adopt", "--format", "json"], db.url).stdout)["data"]
    assert again["adoption"]["adopted"] is False
    assert again["adoption"]["reason"] == "already adopted"


def test_downgrade_to_the_adoption_revision_and_back_works(db):
    db.adopt()
    assert run_cli(["migrate", "--downgrade", "0002"], db.url).exit_code == 0
    assert db.scalar("SELECT version_num FROM kpictl_alembic_version") == "0002"
    assert run_cli(["migrate"], db.url).exit_code == 0
    assert db.scalar("SELECT version_num FROM kpictl_alembic_version") == migrations.head_revision()


# --- the documented procedure, command for command -------------------------------------------


def _section_commands(title: str) -> list[str]:
    """The ```sh blocks of one `##` section of docs/OPERATIONS.md."""
    document = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    section = document.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def _postgres_bin(db: Afu9Db) -> Path | None:
    """The client programs of the test server's own installation when they are on this
    machine (the embedded server), else the ones on PATH."""
    try:
        server_bin = Path(db.scalar("SELECT setting FROM pg_config WHERE name = 'BINDIR'"))
        if (server_bin / "pg_dump").exists():
            return server_bin
    except Exception:  # pg_config needs a superuser; a remote server's paths are not ours
        pass
    found = shutil.which("pg_dump")
    return Path(found).parent if found else None


def test_documented_adoption_and_restore_commands(db, tmp_path):
    bin_dir = _postgres_bin(db)
    if bin_dir is None:
        pytest.skip("pg_dump / pg_restore / psql not available")
    steps, restore = _section_commands("Adopting an AFU-9 database")
    assert "kpictl migrate --adopt --sql > kpictl-adoption.sql" in steps
    assert "pg_dump --format=custom" in steps and "\nkpictl migrate --adopt\n" in steps
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("KPICTL_DATABASE", "DATABASE"))
        },
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KPICTL_DATABASE_URL": libpq(db.url),
    }
    before = db.fingerprint()
    script = "\n".join(
        line for line in steps.splitlines() if not line.startswith("export KPICTL_DATABASE_URL")
    )
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    if "server version mismatch" in run.stderr:
        pytest.skip("pg_dump is older than the test server")
    assert "backup readable" in run.stdout, run.stderr
    assert "removed 5 duplicate snapshots" in run.stdout
    assert (tmp_path / "kpictl-adoption.sql").read_text().startswith("-- kpictl: adoption")
    assert db.scalar("SELECT count(*) FROM kpi_snapshots WHERE job_id IS NOT NULL") > 0
    run = subprocess.run(
        ["bash", "-c", restore], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    after = db.fingerprint()
    # The restore refreshes the platform's materialized views (their rows hold now()), and
    # PostgreSQL prints a restored `IN (...)` CHECK or index predicate with its casts in
    # another place.
    for state in (before, after):
        state.pop("rows mv_factory_kpis_24h")
        state.pop("rows mv_product_kpis_7d")
        state["constraints"] = sorted(row[:2] for row in state["constraints"])
        state["indexes"] = sorted(row[:2] for row in state["indexes"])
        state["views"] = [
            (name, re.sub(r"::[a-z ]+(\[\])?|[()\s]", "", definition))
            for name, definition in state["views"]
        ]
    assert after == before


def test_missing_counts_and_creation_times_are_filled(db):
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE kpi_snapshots SET created_at = NULL WHERE id = :id"),
            {"id": afu9.uid(0x303)},
        )
        conn.execute(
            text(
                "UPDATE kpi_aggregation_jobs SET snapshots_created = NULL, created_at = NULL "
                "WHERE id = :id"
            ),
            {"id": afu9.JOB_FAILED},
        )
    result = run_cli(["migrate", "--adopt", "--with-sources"], db.url)
    assert result.exit_code == 0, result.output
    assert "created source tables: avi_reports, vdp_vli_audit" in result.stdout
    row = next(r for r in afu9.snapshot_rows(db.now) if r["id"] == afu9.uid(0x303))
    assert db.scalar("SELECT created_at FROM kpi_snapshots WHERE id = :id", id=row["id"]) == utc(
        row["calculated_at"]
    )
    job = db.rows(
        "SELECT snapshots_created, created_at, started_at FROM kpi_aggregation_jobs WHERE id = :id",
        id=afu9.JOB_FAILED,
    )[0]
    assert job.snapshots_created == 0 and job.created_at == job.started_at
