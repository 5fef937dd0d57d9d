"""Hourly additive parts (revision 0004): what lets a 5-minute cycle cost what its new runs cost.

Every `aggregate` keeps `kpi_hourly_runs` and `kpi_hourly_totals` current for the full UTC hours
of its window and of the views' last 7 days; its product and factory levels and both
materialized views then add up those hours and read only the rest of the window (the partial
hours at its edges) from the source tables. Parts are sums of the same additive quantities the
levels compute (counts, exact numeric duration sums), so a rolled-up value equals the one
computed from the runs, to the last digit.

Which hours a cycle recomputes (`PartsScan`):
- incremental: the hours from the previous cycle's end less the look-back (runs committed a
  little after they completed) to the end of this one, plus every kept hour of the last
  LATE_CHECK whose count of executions (by completed_at) or verdicts (by decided_at) no longer
  matches the sources: a run recorded late, or deleted, within a day is noticed by the next
  cycle. The check is one index-only count over those hours (its cost grows with their runs,
  not with the window's); only on a mismatch does it look hour by hour. Older hours are checked
  by the hourly full rebuild.
- full (the kept hours are replaced): on the first cycle, when the kept hours do not reach back
  far enough, when the period ends before the previous one, and every `full_scan_every` (like
  the run level), which also catches changes no count shows (a status or started_at rewritten
  in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import TextClause

from kpictl.db import kpi_rules as rules
from kpictl.db import kpi_views
from kpictl.services.jobs.rows import last_completed_aggregate_scan
from kpictl.services.pipeline import kpi_sql
from kpictl.services.pipeline.periods import Period

HOUR = timedelta(hours=1)
# How far back every cycle compares the kept hours' counts with the sources (late writes).
LATE_CHECK = timedelta(hours=24)
VIEW_SPAN = timedelta(hours=kpi_views.PRODUCT_VIEW_HOURS)  # the longest view window


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


@dataclass(frozen=True)
class PartsScan:
    """The hours a cycle recomputed, [hours_from, hours_to), and the kept range after it."""

    hours_from: datetime
    hours_to: datetime
    covered_from: datetime
    full: bool
    full_scan_at: datetime
    late_from: datetime | None = None  # earliest kept hour found changed since it was computed

    def window(self, period: Period) -> tuple[datetime, datetime]:
        """[parts_from, parts_to): the full hours of `period` read from the parts; an empty
        range at period.end when there are none (everything then comes from the runs)."""
        parts_from = max(ceil_hour(period.start), self.covered_from)
        parts_to = min(floor_hour(period.end), self.hours_to)
        if parts_from >= parts_to:
            return period.end, period.end
        return parts_from, parts_to

    def as_metadata(self, through: datetime) -> dict[str, Any]:
        return {
            "hours_from": self.hours_from.isoformat(),
            "hours_to": self.hours_to.isoformat(),
            "covered_from": self.covered_from.isoformat(),
            "through": through.isoformat(),
            "full": self.full,
            "full_scan_at": self.full_scan_at.isoformat(),
            "late_from": self.late_from.isoformat() if self.late_from else None,
        }


def keep_current(
    connection: Connection,
    period: Period,
    *,
    source_timezone: str,
    lookback: timedelta,
    full_scan_every: timedelta,
    full_refresh: bool = False,
) -> PartsScan:
    """Recompute the hours that may have changed since the previous cycle, in the caller's
    transaction (the product level's: its rows and the parts they add up commit together);
    every hour with `full_refresh`."""
    clock = kpi_sql.SourceClock.detect(connection)
    now = connection.execute(text("SELECT now()")).scalar_one()
    needed_from = floor_hour(min(period.start, period.end - VIEW_SPAN))
    hours_to = floor_hour(period.end)
    kept_from, kept_to = connection.execute(KEPT_RANGE).one()
    previous = None if full_refresh else last_completed_aggregate_scan(connection, "parts_scan")
    parameters: dict[str, Any] = {"source_tz": source_timezone, "hours_to": hours_to}
    scan: PartsScan | None = None
    if previous and kept_from is not None and kept_from <= needed_from:
        through = datetime.fromisoformat(previous["through"])
        full_scan_at = datetime.fromisoformat(previous["full_scan_at"])
        if period.end >= through and now - full_scan_at < full_scan_every:
            hours_from = min(floor_hour(through - lookback), kept_to, hours_to)
            checked_from = max(kept_from, floor_hour(hours_from - LATE_CHECK))
            late_from = _first_late_hour(connection, clock, checked_from, hours_from, parameters)
            if late_from is not None:
                hours_from = late_from
            scan = PartsScan(hours_from, hours_to, kept_from, False, full_scan_at, late_from)
    if scan is None:
        scan = PartsScan(needed_from, hours_to, needed_from, True, now)
    parameters.update(hours_from=scan.hours_from, full=scan.full)
    for statement in recompute(clock):
        connection.execute(statement, parameters)
    return scan


def _first_late_hour(
    connection: Connection,
    clock: kpi_sql.SourceClock,
    covered_from: datetime,
    hours_from: datetime,
    parameters: dict[str, Any],
) -> datetime | None:
    """The earliest kept hour in [covered_from, hours_from) whose executions or verdicts
    changed."""
    if covered_from >= hours_from:
        return None
    bounds = {**parameters, "covered_from": covered_from, "hours_from": hours_from}
    if not connection.execute(kpi_sql.clocked_sql(COUNTS_CHANGED, clock), bounds).scalar_one():
        return None
    return connection.execute(kpi_sql.clocked_sql(FIRST_CHANGED_HOUR, clock), bounds).scalar()


KEPT_RANGE = text("SELECT min(hour), max(hour) + interval '1 hour' FROM kpi_hourly_totals")

# Kept hours [covered_from, hours_from): do their totals still match the sources? (Index-only
# counts on the completed_at and decided_at indexes.)
COUNTS_CHANGED = """
SELECT (SELECT coalesce(sum(executions), 0) FROM kpi_hourly_totals
        WHERE hour >= CAST(:covered_from AS timestamptz) AND hour < CAST(:hours_from AS timestamptz))
       <> (SELECT count(*) FROM workflow_executions e
           WHERE e.completed_at >= {c_cov} AND e.completed_at < {c_hfrom})
    OR (SELECT coalesce(sum(verdicts), 0) FROM kpi_hourly_totals
        WHERE hour >= CAST(:covered_from AS timestamptz) AND hour < CAST(:hours_from AS timestamptz))
       <> (SELECT count(*) FROM verdict_outcomes v
           WHERE v.decided_at >= {d_cov} AND v.decided_at < {d_hfrom})
"""

FIRST_CHANGED_HOUR = f"""
WITH executions AS (
  SELECT {rules.hour_of("{completed}")} AS hour, count(*) AS seen
  FROM workflow_executions e
  WHERE e.completed_at >= {{c_cov}} AND e.completed_at < {{c_hfrom}}
  GROUP BY 1
),
verdicts AS (
  SELECT {rules.hour_of("{decided}")} AS hour, count(*) AS seen
  FROM verdict_outcomes v
  WHERE v.decided_at >= {{d_cov}} AND v.decided_at < {{d_hfrom}}
  GROUP BY 1
)
SELECT min(t.hour)
FROM kpi_hourly_totals t
LEFT JOIN executions x ON x.hour = t.hour
LEFT JOIN verdicts v ON v.hour = t.hour
WHERE t.hour >= CAST(:covered_from AS timestamptz) AND t.hour < CAST(:hours_from AS timestamptz)
  AND (t.executions <> coalesce(x.seen, 0) OR t.verdicts <> coalesce(v.seen, 0))
"""


def recompute(clock: kpi_sql.SourceClock) -> list[TextClause]:
    """Replace the parts of the hours [hours_from, hours_to) (all kept hours when :full), and
    write a totals row for each of those hours, zero hours included (the kept range stays
    contiguous)."""
    return [
        text("DELETE FROM kpi_hourly_runs WHERE :full OR hour >= CAST(:hours_from AS timestamptz)"),
        text(
            "DELETE FROM kpi_hourly_totals WHERE :full OR hour >= CAST(:hours_from AS timestamptz)"
        ),
        kpi_sql.clocked_sql(
            f"""
INSERT INTO kpi_hourly_runs (hour, repository_id, completed, failed, duration_sum_ms, invalid)
SELECT {rules.hour_of("{completed}")}, e.repository_id,
       {rules.run_parts("{started}", "{completed}")}
FROM workflow_executions e
{rules.VALID_RUN}
WHERE {rules.terminal_status("e")}
  AND {rules.in_period("e.completed_at", "{c_hfrom}", "{c_hto}")}
GROUP BY 1, 2
""",
            clock,
        ),
        kpi_sql.clocked_sql(
            f"""
INSERT INTO kpi_hourly_totals (hour, executions, verdicts, accepted, overridden, escalated)
SELECT g.hour, coalesce(x.executions, 0), coalesce(v.verdicts, 0), coalesce(v.accepted, 0),
       coalesce(v.overridden, 0), coalesce(v.escalated, 0)
FROM generate_series(CAST(:hours_from AS timestamptz),
                     CAST(:hours_to AS timestamptz) - interval '1 hour', interval '1 hour') g(hour)
LEFT JOIN (
  SELECT {rules.hour_of("{completed}")} AS hour, count(*) AS executions
  FROM workflow_executions e
  WHERE e.completed_at >= {{c_hfrom}} AND e.completed_at < {{c_hto}}
  GROUP BY 1
) x ON x.hour = g.hour
LEFT JOIN (
  SELECT {rules.hour_of("{decided}")} AS hour, count(*) AS verdicts,
         {rules.verdict_parts("v", named=True)}
  FROM verdict_outcomes v
  WHERE v.decided_at >= {{d_hfrom}} AND v.decided_at < {{d_hto}}
  GROUP BY 1
) v ON v.hour = g.hour
""",
            clock,
        ),
    ]
