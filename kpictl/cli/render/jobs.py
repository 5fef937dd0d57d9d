"""`kpictl jobs` output: list rows, and one job as `column: value` lines or a CSV row."""

from __future__ import annotations

from typing import Any

from kpictl.serialize import dumps
from kpictl.services.jobs.listing import LIST_COLUMNS

# Left out first when a terminal is too narrow for the table (ids are never cut).
OPTIONAL = ("error", "completed_at", "duration_ms", "snapshots_created", "started_at")


def list_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows under LIST_COLUMNS (JSON, CSV and table alike)."""
    return [[job[name] for name in LIST_COLUMNS] for job in jobs]


def show_csv_row(job: dict[str, Any]) -> list[Any]:
    """One job as a CSV row under its column names: lists and objects as JSON text."""
    return [dumps(value) if isinstance(value, list | dict) else value for value in job.values()]


def job_lines(job: dict[str, Any]) -> list[str]:
    """`kpictl jobs show` as text: one `column: value` line each, metadata as indented JSON."""
    width = max(len(name) for name in job)
    lines = []
    for name, value in job.items():
        if name == "metadata":
            continue
        if value is None:
            shown = "-"
        elif isinstance(value, list | dict):
            shown = dumps(value)
        elif hasattr(value, "isoformat"):
            shown = value.isoformat()
        else:
            shown = str(value)
        lines.append(f"{name + ':':<{width + 1}} {shown}")
    metadata = job.get("metadata")
    lines.append("metadata:")
    lines.extend(
        "  " + line for line in (dumps(metadata, indent=2) if metadata else "{}").splitlines()
    )
    return lines
