"""Adoption and the job machinery (issue 13, item 3): `migrate --adopt` is serialised by the
migrate lock of `jobs/lock.py` (the same helpers as every job), and job rows, the adoption's
own and the ones it marks `abandoned`, are written by `jobs/rows.py` only: marking jobs
abandoned exists in one place."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

import kpictl
from kpictl.db.engine import make_engine
from kpictl.services.adoption import detect
from kpictl.services.adoption.steps import ABANDONED_ERROR as ADOPTION_ABANDONED
from kpictl.services.jobs import lock as locks
from kpictl.services.jobs import rows
from kpictl.services.schema import migrate
from tests import afu9
from tests.conftest import test_settings

PACKAGE = Path(kpictl.__file__).resolve().parent
ROWS_MODULE = Path(rows.__file__).resolve()


def _written_outside_rows(pattern: str) -> list[str]:
    compiled = re.compile(pattern, re.IGNORECASE)
    return [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.resolve() != ROWS_MODULE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if compiled.search(line)
    ]


def test_marking_jobs_abandoned_is_written_once():
    assert _written_outside_rows(r"status\s*=\s*'abandoned'") == []
    assert re.search(r"status\s*=\s*'abandoned'", ROWS_MODULE.read_text())


def test_job_rows_are_inserted_by_the_rows_module_only():
    assert _written_outside_rows(r"INSERT\s+INTO\s+kpi_aggregation_jobs") == []
    assert _written_outside_rows(r"\binsert\(\s*(jobs|kpi_aggregation_jobs)\b") == []


def test_the_abandon_statement_for_a_lock_and_for_the_old_scheduler():
    sql, values = rows.abandon_statement("gone", job_types=("aggregate", "backfill"))
    assert sql.endswith("WHERE status IN ('running', 'pending') AND job_type = ANY(:job_types)")
    assert values == {"error": "gone", "job_types": ["aggregate", "backfill"]}
    sql, values = rows.abandon_statement("left", status="pending")
    assert sql.endswith("WHERE status = :status") and values == {
        "error": "left",
        "status": "pending",
    }
    with pytest.raises(ValueError, match="unfinished"):
        rows.abandon_statement("no", status="completed")


def test_taking_a_job_lock_abandons_the_unfinished_rows_of_its_kind(engine):
    with engine.begin() as conn:
        ids = {
            (job_type, status): conn.execute(
                text(
                    "INSERT INTO kpi_aggregation_jobs (job_type, status, started_at, error) "
                    "VALUES (:type, :status, now(), :error) RETURNING id"
                ),
                {"type": job_type, "status": status, "error": error},
            ).scalar_one()
            for job_type, status, error in (
                ("aggregate", "running", None),
                ("backfill", "pending", "kept"),
                ("aggregate", "completed", None),
                ("retention", "running", None),
            )
        }
    with locks.hold(engine, locks.PIPELINE) as held:
        assert held.abandoned == 2
    with engine.connect() as conn:
        found = {
            row.id: row
            for row in conn.execute(text("SELECT id, status, error FROM kpi_aggregation_jobs"))
        }
    running = found[ids[("aggregate", "running")]]
    assert (running.status, running.error) == ("abandoned", locks.ABANDONED_ERROR)
    assert tuple(found[ids[("backfill", "pending")]][1:]) == ("abandoned", "kept")
    assert found[ids[("aggregate", "completed")]].status == "completed"
    assert found[ids[("retention", "running")]].status == "running"  # another lock's kind


# --- on an AFU-9 database ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def afu9_template(pg_server):
    name = f"afu9_jobs_template_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    engine = make_engine(url, test_settings(url))
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    with engine.begin() as conn:
        afu9.build_afu9(conn, now)
    engine.dispose()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def afu9_engine(pg_server, afu9_template):
    name = f"a_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=afu9_template)
    engine = make_engine(url, test_settings(url))
    yield engine
    engine.dispose()
    pg_server.drop_database(name)


def test_adoption_writes_its_row_and_abandons_through_the_rows_module(afu9_engine):
    result = migrate.adopt(afu9_engine, metadata={"argv": ["migrate", "--adopt"]})
    assert result.adoption.adopted
    with afu9_engine.connect() as conn:
        jobs = {
            row.id: row
            for row in conn.execute(
                text(
                    "SELECT id, job_type, status, error, started_at, completed_at, duration_ms, "
                    "snapshots_created, metadata FROM kpi_aggregation_jobs"
                )
            )
        }
    for job, status in ((afu9.JOB_PENDING, "pending"), (afu9.JOB_STUCK, "running")):
        assert (jobs[job].status, jobs[job].error) == (
            "abandoned",
            ADOPTION_ABANDONED.format(status=status),
        )
    adopt = jobs[uuid.UUID(result.adoption.job_id)]
    assert (adopt.job_type, adopt.status, adopt.snapshots_created) == ("adopt", "completed", 0)
    assert adopt.started_at <= adopt.completed_at and adopt.duration_ms >= 0
    assert adopt.metadata["argv"] == ["migrate", "--adopt"]
    assert adopt.metadata["jobs_abandoned"] == 2


def test_adoption_waits_for_the_migrate_lock(afu9_engine):
    """Another `kpictl migrate` holds the lock: the adoption starts only once it is released."""
    outcome: dict = {}

    def adopt() -> None:
        try:
            outcome["result"] = migrate.adopt(afu9_engine, metadata={})
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    with locks.hold(afu9_engine, locks.MIGRATE):
        worker = threading.Thread(target=adopt)
        worker.start()
        time.sleep(1.5)
        with afu9_engine.connect() as conn:
            assert detect.needs_adoption(conn)  # not adopted while we hold the lock
        assert worker.is_alive()
    worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].adoption.adopted
