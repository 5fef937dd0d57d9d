"""Rendering in one place: results to stdout as table, JSON or CSV; nothing else goes to stdout.

Tables (`cli/tables.py`) use rich on a terminal (colour unless NO_COLOR) and tabulate otherwise,
so piped output is plain and deterministic. JSON is one document. CSV is RFC 4180 with LF line ends. What goes
out is built from the services' results in `kpictl/cli/render/`.

Output into a closed pipe (`kpictl ... | head`) is not an error: `reader_gone` is the one rule,
applied where the BrokenPipeError is caught (`runtime.run_command`, or `tolerate_closed_pipe`
where the write happens inside a transaction that must still end normally).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from kpictl.serialize import json_default


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def colour_enabled() -> bool:
    return "NO_COLOR" not in os.environ


def json_text(document: Any) -> str:
    """The JSON text every command prints (indented, UTF-8, kpictl's Decimal/datetime rules)."""
    return json.dumps(document, default=json_default, indent=2, ensure_ascii=False) + "\n"


def emit_json(document: Any, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json_text(document))


# --- the one JSON contract (docs/OUTPUT.md) ----------------------------------------------------


_STREAMED = {"stdout": False}  # a document streamed to stdout has begun (history export)


def streamed_document_begun(begun: bool | None = None) -> bool:
    """Whether a JSON document streamed piece by piece to stdout has begun: a failure after that
    cannot print a second document (the cut one is not valid JSON; the exit code says why)."""
    if begun is not None:
        _STREAMED["stdout"] = begun
    return _STREAMED["stdout"]


def success(data: Any, **extras: Any) -> dict[str, Any]:
    """The document of a command that produced its result: `status`, the command's extras
    (`tenant`, `overall`), then `data` (a list of rows keyed by the CSV/table columns, or one
    object). Its verdicts (stale KPIs, failed tenants) are inside; the exit code says them too."""
    return {"status": "success", **extras, "data": data}


def failure(message: str, exit_code: int, **details: Any) -> dict[str, Any]:
    """The document of a command that could not produce its result (bad value, busy lock,
    unreachable database, ...): the message of stderr and the exit code, on stdout."""
    return {"status": "error", "error": {"message": message, "exit_code": exit_code, **details}}


def emit_success(data: Any, **extras: Any) -> None:
    emit_json(success(data, **extras))


def rows_as_objects(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def emit_ndjson(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None
) -> None:
    """One JSON object per row and line (keyed by `columns`), no envelope: for `jq -c` and log
    pipelines. Errors go to stderr only (and the exit code)."""
    out = stream or sys.stdout
    for row in rows:
        out.write(json.dumps(dict(zip(columns, row, strict=True)), default=json_default) + "\n")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def emit_csv(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None
) -> None:
    writer = csv.writer(stream or sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(value) for value in row])


def emit_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    stream: TextIO | None = None,
    optional: Sequence[str] = (),
) -> None:
    """A table for people (`cli/tables.py`): rich on a terminal (stdout only), where the
    `optional` columns, least useful first, make room when it is too narrow; plain tabulate
    text otherwise."""
    from kpictl.cli import tables

    tables.write(
        columns, rows, title=title, stream=stream, optional=optional, colour=colour_enabled()
    )


def emit_rows(
    fmt: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], **kwargs: Any
) -> None:
    """table / csv / json (the rows as objects keyed by column, in the envelope) / ndjson of
    the same rows."""
    if fmt == "json":
        emit_success(rows_as_objects(columns, rows))
    elif fmt == "ndjson":
        emit_ndjson(columns, rows)
    elif fmt == "csv":
        emit_csv(columns, rows)
    else:
        emit_table(columns, rows, **kwargs)


def emit_text(text: str, target: Path | None = None) -> None:
    """`text` to stdout, or atomically to the file `target` (a temporary file in its directory,
    then a rename: a reader such as node_exporter never sees half of it)."""
    if target is None:
        echo(text.rstrip("\n"))
        return
    from kpictl.services.history.export import write_atomically

    write_atomically(target, lambda out: out.write(text))


def echo(line: str = "") -> None:
    sys.stdout.write(f"{line}\n")


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        echo(line)


def reader_gone() -> None:
    """The reader of stdout went away (`| head`): it has what it wanted, so this is not an
    error. Point stdout at /dev/null so that neither later writes nor Python's flush at exit
    complain about it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@contextmanager
def tolerate_closed_pipe() -> Iterator[None]:
    """Write to stdout in the block; a closed pipe ends the block quietly (`reader_gone`)."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        reader_gone()
