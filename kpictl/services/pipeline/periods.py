"""Aggregation periods (docs/spec/pipeline.md §4): aligned windows for `aggregate`, calendar buckets in an
IANA zone for `backfill`. Every period is half-open: [start, end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from kpictl.errors import UsageError
from kpictl.settings import time_zone

MAX_PERIOD_HOURS = 8760
BUCKETS = ("hour", "day", "week")


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def label(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def check_period_hours(hours: int) -> int:
    if not 1 <= hours <= MAX_PERIOD_HOURS:
        raise UsageError(f"--period-hours must be between 1 and {MAX_PERIOD_HOURS}, got {hours}")
    return hours


def aligned_period(now: datetime, hours: int, align_seconds: int) -> Period:
    """period_end = now rounded down to a multiple of `align_seconds` since the epoch (UTC)."""
    check_period_hours(hours)
    if align_seconds < 1 or align_seconds > 86_400:
        raise UsageError(f"--align must be between 1s and 1d, got {align_seconds}s")
    epoch = int(now.timestamp())
    end = datetime.fromtimestamp(epoch - epoch % align_seconds, UTC)
    return Period(end - timedelta(hours=hours), end)


def zone(name: str) -> ZoneInfo:
    """The `--timezone` of a backfill (one time-zone rule: `kpictl.settings.time_zone`)."""
    return time_zone(name, "--timezone")


def parse_instant(value: str, tz: ZoneInfo, option: str) -> datetime:
    """A date (midnight in `tz`) or an ISO date-time (naive = in `tz`) -> aware UTC datetime."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            parsed = datetime(day.year, day.month, day.day)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: {value!r} is not a date (YYYY-MM-DD) or ISO date-time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _bucket_floor(instant: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    if bucket not in BUCKETS:
        raise UsageError(f"--bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
    local = instant.astimezone(tz)
    if bucket == "hour":
        # Hours are aligned in UTC offsets too: a local hour is a UTC hour in every real zone
        # with whole-hour offsets; for half-hour zones this keeps local alignment.
        floored = local.replace(minute=0, second=0, microsecond=0)
    elif bucket == "day":
        floored = datetime(local.year, local.month, local.day)
    else:
        monday = local.date() - timedelta(days=local.weekday())
        floored = datetime(monday.year, monday.month, monday.day)
    if floored.tzinfo is None:
        floored = floored.replace(tzinfo=tz)
    return floored.astimezone(UTC)


def _next_bucket(start: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    if bucket == "hour":
        return start + timedelta(hours=1)  # absolute hours: DST days have 23 or 25 of them
    local = start.astimezone(tz)
    step = timedelta(days=1 if bucket == "day" else 7)
    # Calendar arithmetic on the wall clock, then back to an instant: 23/25-hour DST days.
    wall = datetime(local.year, local.month, local.day) + step
    return wall.replace(tzinfo=tz).astimezone(UTC)


def current_bucket_end(now: datetime, bucket: str, tz: ZoneInfo) -> datetime:
    return _next_bucket(_bucket_floor(now, bucket, tz), bucket, tz)


def buckets(
    since: datetime, until: datetime, bucket: str, tz: ZoneInfo, now: datetime
) -> list[Period]:
    """Calendar buckets covering [since, until); `until` beyond the current bucket is refused."""
    if since >= until:
        raise UsageError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    current_end = _next_bucket(_bucket_floor(now, bucket, tz), bucket, tz)
    if until > current_end:
        raise UsageError(
            f"--until {until.isoformat()} is after the end of the current {bucket} "
            f"({current_end.isoformat()})"
        )
    periods = []
    start = _bucket_floor(since, bucket, tz)
    while start < until:
        end = _next_bucket(start, bucket, tz)
        periods.append(Period(start, end))
        start = end
    if len(periods) > 100_000:
        raise UsageError(f"{len(periods)} {bucket} buckets requested; use a coarser --bucket")
    return periods
