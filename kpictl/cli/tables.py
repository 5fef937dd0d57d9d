"""Tables for people: what `--format table` prints.

- Two libraries, one look: rich on a terminal (it knows the width, wraps long cells, colours
  headers), tabulate in a pipe (plain text that `grep`/`awk` read line by line, never wrapped
  and never cut, deterministic for tests and READMEs). Both: the same columns, the same cells,
  numbers right-aligned, timestamps shortened to `YYYY-MM-DD HH:MM:SS` (UTC; full ISO 8601 in
  JSON and CSV).
- Nothing is cut on a terminal: ids and names are never truncated or wrapped. When the table
  does not fit, the columns a command marked optional are left out, least useful first, and a
  footnote names them; what is left wraps its longer text cells.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TextIO

PADDING = 2  # rich's cell padding, one space each side
# identifiers and names: never wrapped (a wrapped id cannot be copied)
NO_WRAP = ("id", "job_id", "tenant_id", "kpi_name", "kpi", "slug", "tenant", "job_type", "status")


def table_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


NUMBER = re.compile(r"-?\d+(\.\d+)?")
NO_NUMBER = ("no data", "never computed")  # what a renderer shows in a number's place


def is_number(value: Any) -> bool:
    if isinstance(value, str):
        return bool(NUMBER.fullmatch(value))
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def right_aligned(rows: Sequence[Sequence[Any]], width: int) -> list[bool]:
    """Per column: it holds numbers (as values, or as text a renderer formatted), and nothing
    else but "no data" words."""
    present = [
        [row[i] for row in rows if row[i] not in (None, "", *NO_NUMBER)] for i in range(width)
    ]
    return [bool(values) and all(is_number(v) for v in values) for values in present]


def fit(
    columns: Sequence[str], cells: list[list[str]], width: int, optional: Sequence[str]
) -> tuple[list[int], list[str]]:
    """The indexes of the columns to show within `width`, and the optional ones left out
    (in `optional`'s order: least useful first)."""
    shown = list(range(len(columns)))
    hidden: list[str] = []
    for name in optional:
        if _least_width(columns, cells, shown) <= width:
            break
        if name in columns:
            shown.remove(columns.index(name))
            hidden.append(name)
    return shown, hidden


def _least_width(columns: Sequence[str], cells: list[list[str]], shown: list[int]) -> int:
    """The narrowest the table can be: no-wrap columns at their widest cell, the others at
    their longest word (or header), plus the edges and gaps between columns."""
    total = len(shown) + 1
    for i in shown:
        texts = [row[i] for row in cells] + [columns[i]]
        if columns[i] in NO_WRAP:
            total += max(len(text) for text in texts)
        else:
            total += max(len(word) for text in texts for word in (text.split() or [""]))
        total += PADDING
    return total


def rich_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    title: str | None,
    optional: Sequence[str],
    colour: bool,
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(no_color=not colour, highlight=False)
    cells = [[table_cell(value) for value in row] for row in rows]
    shown, hidden = fit(columns, cells, console.width, optional)
    right = right_aligned(rows, len(columns))
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold" if colour else None)
    for i in shown:
        no_wrap = columns[i] in NO_WRAP
        justify: Literal["right", "left"] = "right" if right[i] else "left"
        table.add_column(columns[i], justify=justify, no_wrap=no_wrap, overflow="fold")
    for row in cells:
        table.add_row(*(_text(row[i]) for i in shown))
    console.print(table)
    if hidden:
        console.print(f"(left out at this width: {', '.join(hidden)}; see --format csv or json)")


def _text(cell: str) -> Any:
    """A cell as rich text, never markup: a job error with "[/x]" in it is shown as it is."""
    from rich.text import Text

    return Text(cell)


def plain_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None, out: TextIO
) -> None:
    from tabulate import tabulate

    if title:
        out.write(f"{title}\n")
    cells = [[table_cell(value) for value in row] for row in rows]
    align = ["right" if right else "left" for right in right_aligned(rows, len(columns))]
    text = tabulate(
        cells, headers=list(columns), tablefmt="simple", disable_numparse=True, colalign=align
    )
    out.write(text + "\n")


def write(columns: Sequence[str], rows: Sequence[Sequence[Any]], **options: Any) -> None:
    """A table of `rows` under `columns` on `options["stream"]` (default stdout): rich on a
    terminal, tabulate otherwise; see the module's doc."""
    stream: TextIO | None = options.get("stream")
    if stream is None and sys.stdout.isatty():
        rich_table(
            columns, rows, options.get("title"), options.get("optional", ()), options["colour"]
        )
    else:
        plain_table(columns, rows, options.get("title"), stream or sys.stdout)
