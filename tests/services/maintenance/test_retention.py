"""The retention service (`services/maintenance/retention.py`): exact rows per level at the age
boundaries, batches, the job row, a stop request, an abandoned predecessor. The command itself:
tests/cli/test_retention.py."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event, insert, select, text

from kpictl.db import schema
from kpictl.services.jobs.rows import get_job
from kpictl.services.maintenance import retention as service
from tests import factories
from tests.helpers import db_now, jobs_of_type, snapshot_counts


@pytest.fixture
def aged(engine):
    """Rows 89, 90 and 91 days old at each 90-day target; 729/730/731 at factory level."""
    now = db_now(engine)
    ids = {}
    with engine.begin() as conn:
        for level in ("run", "product"):
            for age in (89, 90, 91):
                ids[(level, age)] = factories.snapshot_at(conn, level, now - timedelta(days=age))
        for age in (729, 730, 731):
            ids[("factory", age)] = factories.snapshot_at(
                conn, "factory", now - timedelta(days=age)
            )
        for age in (89, 90, 91):
            ids[("completed", age)] = factories.job(
                conn, "aggregate", "completed", now - timedelta(days=age)
            )
        ids[("failed", 91)] = factories.job(conn, "aggregate", "failed", now - timedelta(days=91))
        ids[("abandoned", 91)] = factories.job(
            conn, "aggregate", "abandoned", now - timedelta(days=91)
        )
        ids[("cancelled", 91)] = factories.job(
            conn, "aggregate", "cancelled", now - timedelta(days=91)
        )
        # Never deleted, however old: still running (or pending).
        ids[("running", 400)] = factories.job(
            conn, "aggregate", "running", now - timedelta(days=400)
        )
        ids[("pending", 400)] = factories.job(
            conn, "aggregate", "pending", now - timedelta(days=400)
        )
    return now, ids


def test_boundaries_per_level(engine, aged):
    now, ids = aged
    result, job_id = service.run_retention(engine, service.make_policy(), now=now)
    # Strictly older than the cutoff: exactly N days old stays.
    assert {t.target: t.deleted for t in result.targets} == {
        "run": 1,
        "product": 1,
        "factory": 1,
        "jobs": 4,
    }
    with engine.connect() as conn:
        left = set(conn.execute(select(schema.kpi_snapshots.c.id)).scalars())
        jobs_left = set(conn.execute(select(schema.kpi_aggregation_jobs.c.id)).scalars())
    assert left == {
        ids[("run", 89)],
        ids[("run", 90)],
        ids[("product", 89)],
        ids[("product", 90)],
        ids[("factory", 729)],
        ids[("factory", 730)],
    }
    assert jobs_left == {
        ids[("completed", 89)],
        ids[("completed", 90)],
        ids[("running", 400)],
        ids[("pending", 400)],
        job_id,
    }


def test_job_row_records_the_counts(engine, aged):
    now, _ = aged
    result, job_id = service.run_retention(
        engine, service.make_policy(), now=now, job_meta={"argv": ["kpictl", "retention"]}
    )
    job = get_job(engine, job_id)
    assert job["job_type"] == "retention" and job["status"] == "completed"
    assert job["error"] is None and job["duration_ms"] >= 0
    assert job["metadata"]["deleted"] == {"run": 1, "product": 1, "factory": 1, "jobs": 4}
    assert job["metadata"]["snapshots_deleted"] == 3
    assert job["metadata"]["policy"] == {
        "run_days": 90,
        "product_days": 90,
        "factory_days": 730,
        "jobs_days": 90,
        "batch_size": 10000,
    }
    assert job["metadata"]["argv"] == ["kpictl", "retention"]
    assert result.snapshots_deleted == 3


def test_dry_run_deletes_nothing_and_writes_no_job(engine, aged):
    now, _ = aged
    before = snapshot_counts(engine)
    result, job_id = service.run_retention(engine, service.make_policy(), now=now, dry_run=True)
    assert job_id is None
    assert {t.target: t.deleted for t in result.targets} == {
        "run": 1,
        "product": 1,
        "factory": 1,
        "jobs": 4,
    }
    assert snapshot_counts(engine) == before == {"run": 3, "product": 3, "factory": 3}
    assert jobs_of_type(engine, "retention") == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_aggregation_jobs")).scalar() == 8


def test_batches_are_bounded(engine):
    now = db_now(engine)
    with engine.begin() as conn:
        for day in range(5):
            factories.snapshot_at(conn, "run", now - timedelta(days=100 + day))
        factories.snapshot_at(conn, "run", now - timedelta(days=10))
    deletes: list[str] = []

    def count_deletes(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM KPI_SNAPSHOTS"):
            deletes.append(statement)

    event.listen(engine, "before_cursor_execute", count_deletes)
    try:
        result, job_id = service.run_retention(engine, service.make_policy(batch_size=2), now=now)
    finally:
        event.remove(engine, "before_cursor_execute", count_deletes)
    # 5 old run rows in batches of 2: 2 + 2 + 1; the other levels have no expired row (one
    # probe says so: no DELETE); the jobs: one empty batch.
    assert {t.target: t.batches for t in result.targets} == {
        "run": 3,
        "product": 0,
        "factory": 0,
        "jobs": 1,
    }
    assert len(deletes) == 3
    assert all("LIMIT" in statement for statement in deletes)
    assert snapshot_counts(engine) == {"run": 1}
    assert get_job(engine, job_id)["metadata"]["batches"]["run"] == 3


def test_history_and_sources_untouched(engine):
    now = db_now(engine)
    old = now - timedelta(days=5000)
    with engine.begin() as conn:
        tenant = factories.tenant(conn, "acme")
        conn.execute(
            insert(schema.kpi_history).values(
                tenant_id=tenant, as_of=date(2010, 1, 4), aiv_pct=50, created_at=old, updated_at=old
            )
        )
        factories.execution(conn, None, "completed", old, old + timedelta(minutes=5))
        conn.execute(text("UPDATE workflow_executions SET created_at = :old"), {"old": old})
        factories.snapshot_at(conn, "factory", old)
    service.run_retention(engine, service.make_policy(run_days=1, factory_days=1), now=now)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_history")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM workflow_executions")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM tenants")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM kpi_snapshots")).scalar() == 0


def test_vacuum_runs_outside_a_transaction(engine, aged):
    now, _ = aged
    result, _ = service.run_retention(engine, service.make_policy(), now=now, vacuum=True)
    assert result.vacuumed == ["kpi_aggregation_jobs", "kpi_snapshots"]
    with engine.connect() as conn:
        vacuumed = conn.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL "
                "AND (relname IN ('kpi_aggregation_jobs', 'kpi_history') "
                "OR relname LIKE 'kpi_snapshots_%_default')"
            )
        ).scalars()
        # kpi_snapshots is partitioned: VACUUM of it vacuums each partition
        assert sorted(vacuumed) == [
            "kpi_aggregation_jobs",
            "kpi_snapshots_factory_default",
            "kpi_snapshots_product_default",
            "kpi_snapshots_run_default",
        ]


def test_stop_request_between_batches_cancels_the_job(engine):
    """SIGTERM's stop request: finished batches stay deleted, the job ends `cancelled`."""
    from kpictl.errors import ExitCode, Interrupted
    from kpictl.services.jobs.stop import StopRequest

    now = db_now(engine)
    with engine.begin() as conn:
        for day in range(5):
            factories.snapshot_at(conn, "run", now - timedelta(days=100 + day))
    stop = StopRequest()

    def stop_after_first_batch(target: str, rows: int, planned: int) -> None:
        stop.request(ExitCode.SIGTERM, "SIGTERM")

    try:
        with pytest.raises(Interrupted) as raised:
            service.run_retention(
                engine,
                service.make_policy(batch_size=2),
                now=now,
                on_batch=stop_after_first_batch,
                stop=stop,
            )
    finally:
        stop.close()
    assert raised.value.exit_code == ExitCode.SIGTERM
    assert snapshot_counts(engine) == {"run": 3}
    [job] = jobs_of_type(engine, "retention")
    assert job["status"] == "cancelled" and "SIGTERM" in job["error"]
    assert job["metadata"]["deleted"] == {"run": 2}


def test_a_dead_retention_run_is_marked_abandoned(engine):
    now = db_now(engine)
    with engine.begin() as conn:
        dead = factories.job(conn, "retention", "running", now - timedelta(hours=3))
        other = factories.job(conn, "aggregate", "running", now - timedelta(hours=3))
    _, job_id = service.run_retention(engine, service.make_policy(), now=now)
    assert get_job(engine, dead)["status"] == "abandoned"
    assert "abandoned" in get_job(engine, dead)["error"]
    assert get_job(engine, other)["status"] == "running"  # the pipeline's business, not ours
    assert get_job(engine, job_id)["metadata"]["abandoned_marked"] == 1
