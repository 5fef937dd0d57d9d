"""The recent history of each latest KPI value: the same window, one, two, ... windows earlier.

A value's window is its period (`period_start`, `period_end`): 24 hours for an aggregate cycle
of `--period-hours 24`, a day for a daily backfill bucket. Its trend is the value of the
snapshot whose period is that window moved back k window-lengths, for k = points-1 .. 0, so
that every point measures the same span and the points do not overlap; a window without a
snapshot is a gap (None). Read by one query for all KPIs and scopes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import (
    Connection,
    Integer,
    String,
    case,
    cast,
    column,
    func,
    literal,
    select,
    true,
    values,
)
from sqlalchemy.dialects.postgresql import UUID

from kpictl import kpis as registry
from kpictl.db.schema import TIMESTAMPTZ, kpi_snapshots
from kpictl.services.reports.latest import KpiValue

TREND_POINTS = 12

Key = tuple[str, uuid.UUID | None]


def trends(
    connection: Connection, latest: list[KpiValue], *, points: int = TREND_POINTS
) -> dict[Key, list[Decimal | None]]:
    """Per (KPI, scope) of `latest` that has a period: its `points` values, oldest first."""
    rows = [value for value in latest if value.period_start and value.period_end]
    if not rows:
        return {}
    wanted = values(
        column("kpi_name", String),
        column("level", String),
        column("kpi_version", String),
        column("scope_id", UUID(as_uuid=True)),
        column("period_start", TIMESTAMPTZ),
        column("period_end", TIMESTAMPTZ),
        name="wanted",
    ).data(
        [
            (v.kpi_name, v.level, v.kpi_version, v.scope_id, v.period_start, v.period_end)
            for v in rows
        ]
    )
    steps = func.generate_series(0, points - 1).table_valued(column("k", Integer))
    steps = steps.render_derived("steps")
    back = steps.c.k * (wanted.c.period_end - wanted.c.period_start)  # k window lengths
    snapshots = kpi_snapshots
    value = (
        select(snapshots.c.value)
        .where(
            snapshots.c.level == wanted.c.level,
            snapshots.c.kpi_name == wanted.c.kpi_name,
            snapshots.c.kpi_version == wanted.c.kpi_version,  # one definition per series
            # a column of NULLs (factory level) comes back as text: say it is a uuid
            snapshots.c.scope_id.is_not_distinct_from(cast(wanted.c.scope_id, UUID(as_uuid=True))),
            snapshots.c.period_end == wanted.c.period_end - back,
            snapshots.c.period_start == wanted.c.period_start - back,
        )
        .scalar_subquery()  # the snapshot key makes it one row at most
    )
    statement = select(wanted.c.kpi_name, wanted.c.scope_id, steps.c.k, value.label("value"))
    statement = statement.select_from(wanted.join(steps, true()))
    series: dict[Key, list[Decimal | None]] = {
        (v.kpi_name, v.scope_id): [None] * points for v in rows
    }
    for row in connection.execute(statement):
        series[(row.kpi_name, row.scope_id)][points - 1 - row.k] = row.value
    return series


@dataclass(frozen=True)
class Point:
    period_end: datetime  # the newest period end of the points averaged into this one
    value: Decimal | None  # their mean (NULL values left out); None: no data
    window: timedelta | None = field(default=None, compare=False)  # their periods' length


def history(
    connection: Connection,
    kpi_name: str,
    *,
    level: str,
    scope_id: uuid.UUID | None = None,
    since: datetime,
    points: int,
) -> list[Point]:
    """One KPI's values over time, oldest first: its snapshots of one window length whose
    period ended since `since`, averaged server-side into at most `points` consecutive groups (a
    chart has fewer columns than a year has 5-minute cycles).

    The window length is the one most of those snapshots have (the newest such on a tie): the
    aggregate cycles' rolling window on a timer's database, the daily buckets after a backfill
    with a single aggregate, never a mix of both (their values measure different spans)."""
    snapshots = kpi_snapshots
    same_series = (
        snapshots.c.level == level,
        snapshots.c.kpi_name == kpi_name,
        snapshots.c.kpi_version == registry.BY_NAME[kpi_name].version,
        snapshots.c.scope_id.is_not_distinct_from(cast(literal(scope_id), UUID(as_uuid=True))),
        snapshots.c.period_end <= func.now(),
        snapshots.c.period_end >= since,
    )
    length = snapshots.c.period_end - snapshots.c.period_start
    window = (
        select(length)
        .where(*same_series)
        .group_by(length)
        .order_by(func.count().desc(), func.max(snapshots.c.period_end).desc())
        .limit(1)
        .scalar_subquery()
    )
    chosen = (
        select(
            snapshots.c.period_end,
            snapshots.c.value,
            length.label("length"),
            func.ntile(points).over(order_by=snapshots.c.period_end).label("bucket"),
        )
        .where(*same_series, length == window)
        .subquery("chosen")
    )
    statement = (
        select(
            func.max(chosen.c.period_end).label("period_end"),
            func.max(chosen.c.length).label("window"),
            # one value as stored (avg() would give it 16 decimals); several: their mean
            case(
                (func.count(chosen.c.value) == 1, func.min(chosen.c.value)),
                else_=func.avg(chosen.c.value),
            ).label("value"),
        )
        .group_by(chosen.c.bucket)
        .order_by(chosen.c.bucket)
    )
    return [Point(row.period_end, row.value, row.window) for row in connection.execute(statement)]
