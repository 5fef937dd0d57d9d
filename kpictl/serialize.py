"""JSON encoding of the values kpictl handles (datetimes, decimals, UUIDs), shared by the
output layer and the job rows."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(document: Any, **kwargs: Any) -> str:
    return json.dumps(document, default=json_default, **kwargs)
