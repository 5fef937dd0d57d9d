"""Each KPI rule of docs/spec/pipeline.md §3, written once, as a SQL fragment.

The snapshot SQL (`services/pipeline/kpi_sql.py`), the hourly parts
(`services/pipeline/hourly_parts.py`), the adoption's replacement trigger
(`services/adoption/functions.py`) and the current definition of the materialized views
(`kpictl/db/kpi_views.py`) build their statements from these fragments; none of them spells a
rule out again (`tests/services/pipeline/test_kpi_rules.py` greps the package for that). Units
come from the KPI registry (`kpictl/kpis.py`), never from a literal in SQL.

Each fragment is a function of the SQL expressions it applies to (a row alias, a column, a
converted instant), so that the same rule reads `e.completed_at` in one statement and
`(e.completed_at AT TIME ZONE ...)` or `NEW.completed_at` in another. The pieces formatted in are
always SQL written by kpictl itself, never a value from outside.

This module imports nothing from `kpictl.services` (a test checks it), so that anything under
`kpictl/db/` and the Alembic revisions could use it. Revisions keep the SQL they shipped with as
frozen text instead, and a test proves that the newest one ships what these rules produce:
docs/ARCHITECTURE.md, "How to add ...", says why and what to do when a rule changes.
"""

from __future__ import annotations

import re

from kpictl import kpis

# --- runs --------------------------------------------------------------------------------------

TERMINAL_STATUSES = ("completed", "failed")
TERMINAL_STATUS_LIST = "(" + ", ".join(f"'{status}'" for status in TERMINAL_STATUSES) + ")"


def terminal_status(row: str = "e") -> str:
    """The run has a terminal status (a candidate: valid or invalid)."""
    return f"{row}.status IN {TERMINAL_STATUS_LIST}"


def usable_timestamps(row: str = "e") -> str:
    """Both timestamps are there, finite, and in order: what makes a terminal-status run count
    (otherwise it is an invalid run, left out of every KPI)."""
    return (
        f"{row}.started_at IS NOT NULL AND {row}.completed_at IS NOT NULL\n"
        f"    AND isfinite({row}.started_at) AND isfinite({row}.completed_at)\n"
        f"    AND {row}.completed_at >= {row}.started_at"
    )


def terminal_run(row: str = "e") -> str:
    """A terminal run: a terminal status and usable timestamps."""
    return f"{terminal_status(row)}\n    AND {usable_timestamps(row)}"


def in_period(column: str, start: str, end: str) -> str:
    """Periods are half-open: [start, end)."""
    return f"{column} >= {start} AND {column} < {end}"


def edges(start: str, parts_from: str, parts_to: str, end: str) -> str:
    """The two ranges of [start, end) outside the full hours [parts_from, parts_to) that are read
    from the hourly parts, as a FROM item `edge(lo, hi)` of two rows (LATERAL: the bounds may be
    columns of an earlier FROM item). Joined to a table on `in_period(column, "edge.lo",
    "edge.hi")`, each range is one scan of `column`'s index, index-only when the index covers
    the columns read (an OR of the two ranges would be a bitmap scan, which reads the table)."""
    return f"LATERAL (VALUES ({start}, {parts_from}), ({parts_to}, {end})) AS edge(lo, hi)"


def duration_ms(started: str, completed: str) -> str:
    """A run's duration in milliseconds (fractions kept)."""
    return f"extract(epoch FROM {completed} - {started}) * 1000"


# `valid` for each run `e` with a terminal status: does it count (`terminal_run`), or is it an
# invalid run? A lateral column, for `run_parts`.
VALID_RUN = f"CROSS JOIN LATERAL (SELECT ({terminal_run('e')}) AS valid) v"


def run_parts(started: str, completed: str, valid: str | None = "valid") -> str:
    """The additive parts of the runs `e`: completed, failed, duration_sum_ms and, with `valid`
    (the column of `VALID_RUN`), invalid. `valid=None`: the runs are terminal runs already
    (filtered by `terminal_run("e")`), and there is no invalid count."""
    where = f"{valid} AND " if valid else ""
    parts = [
        f"count(*) FILTER (WHERE {where}e.status = 'completed')",
        f"count(*) FILTER (WHERE {where}e.status = 'failed')",
        f"sum({duration_ms(started, completed)})" + (f" FILTER (WHERE {valid})" if valid else ""),
    ]
    if valid:
        parts.append(f"count(*) FILTER (WHERE NOT {valid})")
    return ",\n       ".join(parts)


def run_parts_metadata(parts: str) -> str:
    """The additive parts a product or factory row carries in `metadata`, from a row `parts`
    with completed, failed and duration_sum_ms (the period's length bound as :period_seconds)."""
    return (
        f"jsonb_build_object('completed', {parts}.completed, 'failed', {parts}.failed,\n"
        f"                   'terminal_runs', {parts}.completed + {parts}.failed,\n"
        f"                   'duration_sum_ms', {parts}.duration_sum_ms,\n"
        "                   'period_hours', CAST(:period_seconds AS numeric) / 3600)"
    )


# --- verdicts ----------------------------------------------------------------------------------

DECIDED_OUTCOMES = ("accepted", "overridden", "escalated")


def decided(row: str = "v") -> str:
    """A decided verdict (steering accuracy's denominator; `unknown` is left out)."""
    return f"{row}.outcome IN (" + ", ".join(f"'{outcome}'" for outcome in DECIDED_OUTCOMES) + ")"


def outcome_count(outcome: str, row: str = "v") -> str:
    if outcome not in DECIDED_OUTCOMES:
        raise ValueError(f"not a decided outcome: {outcome!r}")
    return f"count(*) FILTER (WHERE {row}.outcome = '{outcome}')"


def verdict_parts(row: str = "v", *, named: bool = False) -> str:
    """accepted, overridden, escalated: the counts of the verdicts `row` (`named`: AS each)."""
    return ",\n         ".join(
        outcome_count(outcome, row) + (f" AS {outcome}" if named else "")
        for outcome in DECIDED_OUTCOMES
    )


def verdict_parts_metadata(parts: str) -> str:
    """steering_accuracy's additive parts in `metadata`, from a row `parts`."""
    return (
        f"jsonb_build_object('accepted', {parts}.accepted,\n"
        f"                   'overridden', {parts}.overridden,\n"
        f"                   'escalated', {parts}.escalated,\n"
        f"                   'decided', {parts}.accepted + {parts}.overridden\n"
        f"                              + {parts}.escalated)"
    )


# --- formulas ----------------------------------------------------------------------------------


def percent(part: str, whole: str) -> str:
    """A rate, 0 to 100: success rates, tool call success rate, steering accuracy. `whole` is
    the caller's denominator expression (with `nullif(..., 0)` where it may be 0)."""
    return f"100.0 * {part} / {whole}"


def mean(total: str, count: str) -> str:
    """A mean of additive parts (mean duration, MTTI): the sum over the count."""
    return f"{total} / {count}"


def runs_per_day(terminal: str, period_seconds: str) -> str:
    """Throughput: terminal runs / (period hours / 24), no floor, for a period in seconds."""
    return f"{terminal} * 86400.0 / {period_seconds}"


def runs_per_day_over_days(terminal: str, days: int) -> str:
    """The same rule over a window of whole days (the views' 24 hours and 7 days): terminal runs
    / days, and the count itself over one day (the views' output as it has always been)."""
    return f"CAST({terminal} AS numeric)" if days == 1 else f"{terminal} / {days}.0"


def tool_call_succeeded(row: str = "t") -> str:
    return f"{row}.error IS NULL"


def agent_run_tokens(row: str = "a") -> str:
    """One agent run's tokens: total_tokens, or prompt + completion where it is NULL (a NULL
    part counts 0); token_usage is their sum over the run's agent runs."""
    return (
        f"coalesce({row}.total_tokens::numeric,\n"
        f"                    coalesce({row}.prompt_tokens, 0)::numeric"
        f" + coalesce({row}.completion_tokens, 0))"
    )


def at_source_zone(value: str, zoneless: bool, zone: str) -> str:
    """Zone-less source timestamps hold wall-clock times of the source zone (UTC, or
    KPICTL_SOURCE_TIMEZONE; `zone` is its SQL expression): a zone-less column converted this way
    is an instant, and an instant converted this way is the wall-clock value to compare with a
    zone-less column (which keeps the comparison sargable on the column's index)."""
    return f"({value} AT TIME ZONE {zone})" if zoneless else value


# --- units and hours ---------------------------------------------------------------------------

_UNIT = re.compile(r"[a-z_]+")


def unit(kpi_name: str) -> str:
    """The KPI's unit from the registry, as a SQL literal (checked: it is formatted into SQL)."""
    value = kpis.BY_NAME[kpi_name].unit
    if not _UNIT.fullmatch(value):
        raise ValueError(f"unit {value!r} of {kpi_name} is not a plain lower-case word")
    return f"'{value}'"


# Hours are UTC hours: date_bin from this origin.
HOUR_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"


def hour_of(instant: str) -> str:
    """The UTC hour that contains `instant` (a timestamptz expression)."""
    return f"date_bin('1 hour', {instant}, {HOUR_ORIGIN})"
