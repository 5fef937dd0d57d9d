"""`kpictl history` output: the fill's tables and exit code (docs/spec/history.md §2), the
export's JSON writer and table rows (docs/spec/history.md §3), the lines of grant and revoke.
The export's CSV is not built here: PostgreSQL writes it with COPY
(`services/history/export.py::copy_csv`), streamed as it comes.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TextIO

from kpictl.errors import ExitCode
from kpictl.serialize import decimal_json
from kpictl.services.history.export import METRICS, ExportRow
from kpictl.services.history.fill import FORBIDDEN, NO_AVI, FillRun, TenantOutcome
from kpictl.services.history.grants import GrantChange
from kpictl.services.history.tenants import Tenant

# --- history fill --------------------------------------------------------------------------

FILL_SINGLE_COLUMNS = ["tenant", "status", "detail"]
FILL_SUMMARY_COLUMNS = ["ok", "skipped", "errors", "total"]
FILL_ERROR_COLUMNS = ["slug", "tenant_id", "code", "message"]


def fill_exit_code(run: FillRun) -> int:
    """0 nothing errored (skips allowed); 77 the database refused every tenant that had something
    to write (errors, all FORBIDDEN, nothing filled; NO_AVI skips aside); else 1 when the fill
    failed (a tenant errored; one tenant asked for with NO_AVI)."""
    if not run.failed:
        return ExitCode.OK
    errors = [outcome.code for outcome in run.outcomes if outcome.code not in (None, NO_AVI)]
    filled = any(outcome.code is None for outcome in run.outcomes)
    if errors and not filled and all(code == FORBIDDEN for code in errors):
        return ExitCode.NOPERM
    return ExitCode.FAILED


def fill_single_rows(outcome: TenantOutcome) -> list[list[Any]]:
    """The one-tenant table: 'ok' and the newest week written, or the code and its message."""
    status = "ok" if outcome.code is None else outcome.code
    detail = outcome.as_of.isoformat() if outcome.as_of else outcome.message
    return [[outcome.tenant.slug, status, detail]]


def fill_summary_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [[result["ok"], result["skipped"], len(result["errors"]), result["total"]]]


def fill_error_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [[e["slug"], e["tenant_id"], e["code"], e["message"]] for e in result["errors"]]


# --- history export ------------------------------------------------------------------------


def fixed(value: Decimal | None) -> str:
    """A number with exactly 2 decimals (half away from zero); NULL as ''."""
    return "" if value is None else decimal_json(value, places=2)


def csv_record(row: ExportRow) -> list[str]:
    """One exported row as text: the date, then each metric with 2 decimals ('' for NULL)."""
    return [row[0].isoformat(), *(fixed(value) for value in row[1:])]


def table_rows(rows: Iterable[ExportRow]) -> list[list[str]]:
    """Rows for a table (at most --limit of them, so held in memory)."""
    return [csv_record(row) for row in rows]


def write_json(tenant: Tenant, rows: Iterable[ExportRow], out: TextIO) -> int:
    """`{"status", "tenant": {"id", "slug"}, "data": [...]}`, one record per line, written as
    rows arrive; numbers keep their 2 decimals (12.50), NULL is null. Returns the record count."""
    from kpictl.cli.output import streamed_document_begun

    rows = iter(rows)
    first = next(rows, None)  # the query runs here: a failure before any output is clean
    head = {"id": str(tenant.id), "slug": tenant.slug}
    streamed_document_begun(out is sys.stdout)
    out.write('{\n  "status": "success",\n  "tenant": ' + json.dumps(head) + ',\n  "data": [')
    count = 0
    for row in itertools.chain([first] if first is not None else [], rows):
        out.write((",\n    " if count else "\n    ") + _row_json(row))
        count += 1
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    streamed_document_begun(False)
    return count


def write_ndjson(_tenant: Tenant, rows: Iterable[ExportRow], out: TextIO) -> int:
    """One record per line, as in `write_json`'s `data`, no envelope. Returns the count."""
    count = 0
    for row in rows:
        out.write(_row_json(row) + "\n")
        count += 1
    return count


def _row_json(row: ExportRow) -> str:
    fields = [f'"as_of": "{row[0].isoformat()}"']
    fields += [
        f'"{name}": {"null" if value is None else decimal_json(value, places=2)}'
        for name, value in zip(METRICS, row[1:], strict=True)
    ]
    return "{" + ", ".join(fields) + "}"


# --- history grant / revoke ----------------------------------------------------------------


def shown_tenant(tenant: Tenant) -> str:
    return f"{tenant.slug} ({tenant.id})"


def grant_lines(changes: Iterable[GrantChange], role: str) -> list[str]:
    return [
        f"{'granted' if change.changed else 'already granted'}: role {role} reads tenant "
        f"{shown_tenant(change.tenant)}"
        for change in changes
    ]


def revoke_lines(changes: Iterable[GrantChange], role: str) -> list[str]:
    return [
        f"revoked: role {role} no longer reads tenant {shown_tenant(change.tenant)}"
        if change.changed
        else f"not granted: role {role} had no grant of tenant {shown_tenant(change.tenant)}"
        for change in changes
    ]
