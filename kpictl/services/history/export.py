"""`kpictl history export` (docs/spec/history.md §3): one tenant's history rows, streamed.

Rows are streamed, so memory stays flat however many rows there are: CSV comes straight from
PostgreSQL's `COPY (...) TO STDOUT WITH (FORMAT csv, HEADER)` (numeric(…, 2) columns and the
rounded means print with their 2 decimals, NULL as an empty field, dates as YYYY-MM-DD);
`stream_history` reads a server-side cursor (`stream_results`, `yield_per`) for the JSON and
table writers of `kpictl/cli/render/history.py`, which write one record at a time. The newest `limit` rows are picked and re-sorted oldest first by PostgreSQL;
grouping by month or quarter and the rounding of the means happen there too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from sqlalchemy import Connection, text

from kpictl.errors import CommandFailed
from kpictl.services.history.tenants import Tenant, set_tenant

if TYPE_CHECKING:
    import psycopg

METRICS = (
    "aiv_pct",
    "ati_pct",
    "crs_pct",
    "elasticity_usd_per_point",
    "vli_integrity_pct",
    "hrp_pct",
)
COLUMNS = ("as_of", *METRICS)
# One exported row, in COLUMNS order: the date (week, month or quarter), then each metric.
ExportRow = tuple[date, *tuple[Decimal | None, ...]]
GRAINS = ("week", "month", "quarter")
YIELD_PER = 2000


@dataclass(frozen=True)
class ExportQuery:
    """Which rows: `limit` None means every row in range (`--all`)."""

    limit: int | None = 52
    since: date | None = None
    until: date | None = None
    grain: str = "week"


# COPY takes no bound parameters: its values travel as bound parameters of set_config() into
# transaction-local settings, which the statement reads back.
SETTING_PREFIX = "kpictl.export_"
PARAMETER_TYPES = {"tenant_id": "uuid", "since": "date", "until": "date", "limit": "integer"}


def export_sql(query: ExportQuery, *, from_settings: bool = False) -> str:
    """Static SQL for `query`; the tenant, dates and limit are bound parameters (or, for COPY,
    transaction settings set from bound parameters)."""
    assert query.grain in GRAINS

    def value(name: str) -> str:
        if from_settings:
            return f"CAST(current_setting('{SETTING_PREFIX}{name}') AS {PARAMETER_TYPES[name]})"
        return f":{name}"

    filters = [f"tenant_id = {value('tenant_id')}"]  # besides the policy: never rely on it alone
    if query.since is not None:
        filters.append(f"as_of >= {value('since')}")
    if query.until is not None:
        filters.append(f"as_of <= {value('until')}")
    where = " AND ".join(filters)
    if query.grain == "week":
        period = "as_of"
        values = ", ".join(METRICS)
        grouped = f"SELECT {period} AS as_of, {values} FROM kpi_history WHERE {where}"
    else:
        period = f"CAST(date_trunc('{query.grain}', as_of) AS date)"
        values = ", ".join(f"round(avg({metric}), 2) AS {metric}" for metric in METRICS)
        grouped = f"SELECT {period} AS as_of, {values} FROM kpi_history WHERE {where} GROUP BY 1"
    if query.limit is None:
        return f"{grouped} ORDER BY as_of"
    newest = f"{grouped} ORDER BY as_of DESC LIMIT {value('limit')}"
    return f"SELECT * FROM ({newest}) AS newest ORDER BY as_of"


def stream_history(conn: Connection, tenant: Tenant, query: ExportQuery) -> Iterator[ExportRow]:
    """The tenant's rows, oldest first, from a server-side cursor in the caller's transaction.

    Sets `app.tenant` for that transaction first: the policy shows this tenant's rows only.
    """
    set_tenant(conn, tenant.id)
    streaming = conn.execution_options(stream_results=True, yield_per=YIELD_PER)
    result = streaming.execute(text(export_sql(query)), _parameters(tenant, query))
    try:
        for row in result:
            yield tuple(row)
    finally:
        result.close()


def _parameters(tenant: Tenant, query: ExportQuery) -> dict[str, Any]:
    parameters: dict[str, Any] = {"tenant_id": tenant.id}
    if query.limit is not None:
        parameters["limit"] = query.limit
    if query.since is not None:
        parameters["since"] = query.since
    if query.until is not None:
        parameters["until"] = query.until
    return parameters


def copy_csv(conn: Connection, tenant: Tenant, query: ExportQuery, out: TextIO) -> int:
    """The CSV of docs/spec/history.md §3, formatted by PostgreSQL and streamed block by block with
    COPY, in the caller's transaction; returns the number of records."""
    set_tenant(conn, tenant.id)
    for name, value in _parameters(tenant, query).items():
        conn.execute(
            text("SELECT set_config(:name, :value, true)"),
            {"name": SETTING_PREFIX + name, "value": str(value)},
        )
    conn.execute(text("SET LOCAL DateStyle = 'ISO, YMD'"))
    statement = (
        f"COPY ({export_sql(query, from_settings=True)}) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    lines = 0
    binary = getattr(out, "buffer", None)  # a real file or stdout: pass the bytes through
    if binary is not None:
        out.flush()
    driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for block in copy:
            data = bytes(block)
            lines += data.count(b"\n")
            if binary is not None:
                binary.write(data)
            else:
                out.write(data.decode("utf-8"))  # digits, dates, commas: no split characters
    return max(lines - 1, 0)


def write_atomically(path: Path, write: Callable[[TextIO], int]) -> int:
    """Run `write` on a temporary file next to `path`, then rename it over `path`.

    On any failure the temporary file is removed and `path` is left as it was; a file system
    error is a one-line CommandFailed naming the path.
    """
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CommandFailed(
            f"cannot write {path}: cannot create a file in {directory} ({exc.strerror})"
        ) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            count = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise CommandFailed(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
