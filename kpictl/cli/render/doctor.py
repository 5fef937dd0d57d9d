"""`kpictl doctor` output: one verdict a line, then healthy or unhealthy; and its exit code
(0 healthy, 1 unhealthy, 69 unreachable)."""

from __future__ import annotations

from typing import Any

from kpictl.errors import ExitCode
from kpictl.services.maintenance.doctor import DoctorReport


def check_lines(report: DoctorReport) -> list[str]:
    width = max(len(check.name) for check in report.checks)
    lines = [
        f"{check.status.upper():4}  {check.name:<{width}}  {check.detail}"
        for check in report.checks
    ]
    return [*lines, "", "healthy" if report.healthy else "unhealthy"]


def exit_code(report: DoctorReport) -> int:
    if not report.reachable:
        return ExitCode.UNAVAILABLE
    return ExitCode.OK if report.healthy else ExitCode.FAILED


COLUMNS = ["status", "name", "detail"]


def document(report: DoctorReport) -> dict[str, Any]:
    """`doctor --format json` (docs/OUTPUT.md): the verdict and each check under the columns
    of the text output."""
    from kpictl.cli.output import success

    checks = [dict(zip(COLUMNS, (c.status, c.name, c.detail), strict=True)) for c in report.checks]
    verdict = "healthy" if report.healthy else "unhealthy"
    return success({"health": verdict, "checked_at": report.timestamp, "checks": checks})
