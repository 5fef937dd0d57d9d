"""`kpictl doctor`: the pipeline lock and last-job checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from kpictl.services.jobs.lock import PIPELINE_LOCK_KEY
from tests import factories
from tests.conftest import libpq, run_cli


def checks(db_url: str) -> tuple[int, dict[str, dict]]:
    result = run_cli(["doctor", "--format", "json"], db_url)
    document = json.loads(result.stdout)["data"]
    return result.exit_code, {check["name"]: check for check in document["checks"]}


@contextmanager
def lock_holder(url: str, application_name: str) -> Iterator[int]:
    """Hold the pipeline lock on a connection of its own; yields its backend pid."""
    with psycopg.connect(libpq(url), autocommit=True, application_name=application_name) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (PIPELINE_LOCK_KEY,))
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        yield pid


def test_lock_free(db_url):
    code, found = checks(db_url)
    assert code == 0
    assert found["pipeline lock"]["status"] == "ok"
    assert found["pipeline lock"]["detail"].startswith("not held")


def test_lock_held_by_another_connection_names_its_pid(db_url):
    with lock_holder(db_url, "kpictl aggregate test-holder") as pid:
        code, found = checks(db_url)
        text = run_cli(["doctor"], db_url).stdout
    lock = found["pipeline lock"]
    assert code == 0 and lock["status"] == "ok"
    assert lock["detail"].startswith(f"held by pid {pid} (kpictl aggregate test-holder")
    assert " since 20" in lock["detail"]
    assert f"held by pid {pid}" in text
    _, found = checks(db_url)
    assert found["pipeline lock"]["detail"].startswith("not held")


def test_lock_in_another_database_is_not_ours(db_url, empty_db_url):
    with lock_holder(empty_db_url, "elsewhere"):
        _, found = checks(db_url)
    assert found["pipeline lock"]["detail"].startswith("not held")


def test_lock_holder_running_job_is_named(db_url, engine):
    with lock_holder(db_url, "kpictl lock web-1:77") as pid:
        with engine.begin() as conn:
            factories.job(
                conn,
                "aggregate",
                "running",
                factories.at(1),
                metadata={"host": "web-1", "pid": 77, "lock_backend_pid": pid},
            )
        _, found = checks(db_url)
    assert "(host web-1, pid 77)" in found["pipeline lock"]["detail"]


def test_no_job_yet_warns(db_url):
    code, found = checks(db_url)
    assert code == 0
    assert found["last job"]["status"] == "warn"
    assert "no job has run yet" in found["last job"]["detail"]


def test_last_job_completed_is_ok(db_url, engine):
    with engine.begin() as conn:
        factories.job(conn, "backfill", "failed", factories.at(1), error="old failure")
        job_id = factories.job(
            conn, "aggregate", "completed", factories.at(2), snapshots_created=42, duration_ms=3250
        )
    code, found = checks(db_url)
    assert code == 0
    last = found["last job"]
    assert last["status"] == "ok"
    assert last["detail"] == (
        f"aggregate {job_id} completed, started 2026-01-05T02:00:00+00:00, 42 snapshots in 3250 ms"
    )


def test_last_job_failed_or_abandoned_warns(db_url, engine):
    with engine.begin() as conn:
        factories.job(conn, "aggregate", "completed", factories.at(1))
        failed = factories.job(
            conn,
            "aggregate",
            "failed",
            factories.at(2),
            error="database error: deadlock detected\nDETAIL",
        )
    code, found = checks(db_url)
    assert code == 0  # a warning, not unhealthy
    assert found["last job"]["status"] == "warn"
    # the error's first line only
    assert found["last job"]["detail"] == (
        f"aggregate {failed} failed, started 2026-01-05T02:00:00+00:00: "
        "database error: deadlock detected"
    )
    with engine.begin() as conn:
        abandoned = factories.job(
            conn, "backfill", "abandoned", factories.at(3), error="abandoned: its process ended"
        )
    _, found = checks(db_url)
    assert found["last job"]["status"] == "warn"
    assert found["last job"]["detail"] == (
        f"backfill {abandoned} abandoned, started 2026-01-05T03:00:00+00:00: "
        "abandoned: its process ended"
    )


def test_unmigrated_database_reports_both(empty_db_url):
    code, found = checks(empty_db_url)
    assert code == 1  # not migrated
    assert found["pipeline lock"]["status"] == "ok"
    assert found["last job"]["status"] == "warn"
    assert "kpictl migrate" in found["last job"]["detail"]
