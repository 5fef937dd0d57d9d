"""The job-row writer shared by every long command."""

from __future__ import annotations

from datetime import datetime

from kpictl.services.jobs.rows import finish_job, get_job, job_metadata, start_job


def test_job_row_life(engine):
    meta = job_metadata(
        ["kpictl", "aggregate", "--database-url", "postgresql://u:pw123@h/d"], ["pw123"]
    )
    job_id = start_job(engine, "aggregate", kpi_names=["mtti"], metadata=meta)
    row = get_job(engine, job_id)
    assert row["status"] == "running" and row["started_at"] is not None
    assert "pw123" not in str(row["metadata"])
    finish_job(
        engine, job_id, "completed", snapshots_created=3, metadata={"when": datetime(2026, 1, 1)}
    )
    row = get_job(engine, job_id)
    assert row["status"] == "completed" and row["snapshots_created"] == 3
    assert row["duration_ms"] >= 0 and row["completed_at"] >= row["started_at"]
    assert row["metadata"]["when"] == "2026-01-01T00:00:00" and row["metadata"]["host"]
