"""Trends as text, pure functions of a series (oldest to newest, None for a period without a
value): a Unicode sparkline, the change since the previous value with its direction, and a
line chart of fixed width and height for a terminal or a pipe."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from kpictl.serialize import plain_number

Value = Decimal | float | int | None

BLOCKS = "▁▂▃▄▅▆▇█"
GAP = " "  # a period without a value
FLAT = BLOCKS[3]  # every value equal: the middle of the range


def sparkline(series: Sequence[Value]) -> str:
    """One block per value, scaled between the series' lowest and highest value."""
    present = [float(value) for value in series if value is not None]
    if not present:
        return GAP * len(series)
    low, high = min(present), max(present)
    if high == low:
        return "".join(GAP if value is None else FLAT for value in series)
    top = len(BLOCKS) - 1
    return "".join(
        GAP if value is None else BLOCKS[round((float(value) - low) / (high - low) * top)]
        for value in series
    )


def change(series: Sequence[Value]) -> str:
    """The newest value against the one before it (values, not periods: gaps are skipped):
    `↑ +3.5`, `↓ -1.25`, `→ 0`; empty when there are fewer than two values."""
    present = [Decimal(str(value)) for value in series if value is not None]
    if len(present) < 2:
        return ""
    delta = present[-1] - present[-2]
    arrow = "↑" if delta > 0 else "↓" if delta < 0 else "→"
    sign = "+" if delta > 0 else ""
    return f"{arrow} {sign}{two_decimals(delta)}"


def two_decimals(value: Decimal) -> str:
    """At most two decimals, half away from zero like the values beside it: 1500.125 ->
    '1500.13', 3.50 -> '3.5', 0 -> '0'."""
    text = f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def line_chart(series: Sequence[Value], *, width: int, height: int = 8) -> list[str]:
    """`height` lines of at most `width` characters: a y-axis labelled with the highest and
    lowest value shown, then one column per value (the newest ones that fit), `•` at the
    value's row, blank for a gap."""
    present = [float(value) for value in series if value is not None]
    if not present:
        return ["(no values)"]
    labels = [plain_number(max(present), 2), plain_number(min(present), 2)]
    axis = max(len(label) for label in labels) + 2
    shown = list(series)[-max(width - axis, 1) :]
    visible = [float(value) for value in shown if value is not None] or present
    low, high = min(visible), max(visible)
    labels = [plain_number(high, 2), plain_number(low, 2)]
    rows = [[" "] * len(shown) for _ in range(height)]
    for column, value in enumerate(shown):
        if value is not None:
            level = 0 if high == low else (float(value) - low) / (high - low)
            rows[height - 1 - round(level * (height - 1))][column] = "•"
    lines = []
    for index, row in enumerate(rows):
        label = labels[0] if index == 0 else labels[1] if index == height - 1 else ""
        lines.append(f"{label:>{axis - 2}} │" + "".join(row).rstrip())
    return lines
