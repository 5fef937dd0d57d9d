"""How kpictl writes values as text: JSON encoding of datetimes, decimals and UUIDs, shared by
the output layer (`kpictl/cli/`) and the job rows, and plain numbers for messages and checks.

`decimal_json` is the one Decimal policy: every JSON writer goes through it.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID


def decimal_json(value: Decimal, places: int | None = None) -> str:
    """A Decimal as JSON text: always a number, never a string (NULL is null, by the caller).

    With `places` (a column of fixed scale, such as the history's numeric(…, 2) and its rounded
    means): exactly that many decimals, half away from zero (12.50). Without: the shortest text
    of its binary float (66.6667, 40.0; NaN and Infinity as Python's json writes them).
    """
    if places is None:
        return json.dumps(float(value))
    step = Decimal(1).scaleb(-places)
    return f"{Decimal(value).quantize(step, rounding=ROUND_HALF_UP):f}"


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        # a float whose JSON text is decimal_json's: the policy stays in one function
        return float(decimal_json(value))
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(document: Any, **kwargs: Any) -> str:
    return json.dumps(document, default=json_default, **kwargs)


def plain_number(value: float | Decimal, decimals: int = 3) -> str:
    """12.0 -> '12', 12.3456 -> '12.346' (decimals=3), 12.6 -> '13' (decimals=0)."""
    text = f"{float(value):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
