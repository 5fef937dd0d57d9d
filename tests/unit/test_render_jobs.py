"""The `jobs` renderers on job rows built by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from kpictl.cli.render import jobs as render
from kpictl.services.jobs.listing import LIST_COLUMNS

JOB_ID = uuid.UUID("0b6f5f2e-8d1c-4c41-9a57-1f0e7c1d2a33")
STARTED = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def job(**changes) -> dict:
    row = {
        "id": JOB_ID,
        "job_type": "aggregate",
        "status": "completed",
        "started_at": STARTED,
        "completed_at": None,
        "duration_ms": 1200,
        "snapshots_created": 40,
        "error": None,
    }
    return {**row, **changes}


def test_list_rows_follow_the_list_columns():
    assert render.list_rows([job(extra="ignored")]) == [
        [JOB_ID, "aggregate", "completed", STARTED, None, 1200, 40, None]
    ]
    assert len(LIST_COLUMNS) == 8


def test_job_lines_align_values_and_indent_the_metadata():
    shown = job(
        snapshots_by_level={"factory": 10, "run": 30},
        metadata={"host": "h1", "steps": [1, 2]},
    )
    assert render.job_lines(shown) == [
        "id:                 0b6f5f2e-8d1c-4c41-9a57-1f0e7c1d2a33",
        "job_type:           aggregate",
        "status:             completed",
        "started_at:         2026-12-02T10:00:00+00:00",
        "completed_at:       -",
        "duration_ms:        1200",
        "snapshots_created:  40",
        "error:              -",
        'snapshots_by_level: {"factory": 10, "run": 30}',
        "metadata:",
        "  {",
        '    "host": "h1",',
        '    "steps": [',
        "      1,",
        "      2",
        "    ]",
        "  }",
    ]


def test_job_lines_without_metadata():
    assert render.job_lines(job(metadata=None))[-2:] == ["metadata:", "  {}"]


def test_show_csv_row_writes_objects_as_json():
    row = render.show_csv_row(job(snapshots_by_level={"run": 3}, metadata={"pid": 7}))
    assert row[-2:] == ['{"run": 3}', '{"pid": 7}'] and row[0] == JOB_ID
