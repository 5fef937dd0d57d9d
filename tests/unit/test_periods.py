"""Aggregation periods and backfill buckets (`services/pipeline/periods.py`, docs/spec/pipeline.md
§4), called directly: no database, no CLI. Every expected value is a literal worked out by hand in
the comments.

Calendar facts used below: 2026-01-05 is a Monday. Europe/Berlin is UTC+1 in winter and UTC+2
in summer; in 2026 summer time starts on Sunday 2026-03-29 at 01:00 UTC (02:00 local becomes
03:00) and ends on Sunday 2026-10-25 at 01:00 UTC (03:00 local becomes 02:00). Asia/Kolkata is
UTC+5:30 all year."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from kpictl.errors import UsageError
from kpictl.services.pipeline.periods import (
    MAX_PERIOD_HOURS,
    Period,
    aligned_period,
    buckets,
    check_period_hours,
    current_bucket_end,
    parse_instant,
    zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)  # `now` for buckets that are all in the past


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def spans(periods: list[Period]) -> list[tuple[datetime, datetime]]:
    return [(period.start, period.end) for period in periods]


def lengths_in_hours(periods: list[Period]) -> list[float]:
    return [(period.end - period.start) / timedelta(hours=1) for period in periods]


# --- Period --------------------------------------------------------------------------------


def test_label_names_both_ends():
    period = Period(utc(2026, 1, 5), utc(2026, 1, 5, 12))
    assert period.label() == "2026-01-05T00:00:00+00:00 to 2026-01-05T12:00:00+00:00"


# --- aggregate: aligned periods --------------------------------------------------------------


@pytest.mark.parametrize("hours", [1, 24, MAX_PERIOD_HOURS])
def test_period_hours_in_range_are_kept(hours):
    assert check_period_hours(hours) == hours


@pytest.mark.parametrize("hours", [0, -5, 8761])
def test_period_hours_out_of_range_are_usage_errors(hours):
    with pytest.raises(UsageError) as raised:
        check_period_hours(hours)
    assert raised.value.message == f"--period-hours must be between 1 and 8760, got {hours}"
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("align_seconds", "end"),
    [
        # 10:07:42.5 rounded down to 5 minutes
        (300, utc(2026, 1, 5, 10, 5)),
        # ... to the hour
        (3600, utc(2026, 1, 5, 10)),
        # ... to 45 s: 86,400 is a multiple of 45, so multiples of 45 s since the epoch are
        # multiples since midnight: 10:07:42 is 36,462 s after midnight, 36,462 - 36,462 mod 45
        # = 36,462 - 12 = 36,450 s = 10:07:30
        (45, utc(2026, 1, 5, 10, 7, 30)),
        # ... to the day: UTC midnight
        (86_400, utc(2026, 1, 5)),
        # ... to the second: the fraction goes
        (1, utc(2026, 1, 5, 10, 7, 42)),
    ],
)
def test_period_end_is_now_rounded_down_to_the_alignment(align_seconds, end):
    now = utc(2026, 1, 5, 10, 7, 42, 500_000)
    assert aligned_period(now, 24, align_seconds) == Period(end - timedelta(hours=24), end)


def test_a_now_on_the_alignment_is_the_end_itself():
    assert aligned_period(utc(2026, 1, 5, 10, 5), 1, 300) == Period(
        utc(2026, 1, 5, 9, 5), utc(2026, 1, 5, 10, 5)
    )


def test_a_now_in_another_offset_gives_the_same_utc_period():
    # 11:07:42 at UTC+1 is 10:07:42 UTC: the period is in UTC
    now = datetime(2026, 1, 5, 11, 7, 42, tzinfo=timezone(timedelta(hours=1)))
    period = aligned_period(now, 6, 300)
    assert period == Period(utc(2026, 1, 5, 4, 5), utc(2026, 1, 5, 10, 5))
    assert period.end.utcoffset() == timedelta(0)


def test_the_longest_period_is_a_year_of_hours():
    assert MAX_PERIOD_HOURS == 8760
    # 8,760 hours = 365 days before 2026-01-05 00:00: 2025-01-05 00:00 (2025 has no 29 February)
    period = aligned_period(utc(2026, 1, 5, 0, 3), MAX_PERIOD_HOURS, 300)
    assert period == Period(utc(2025, 1, 5), utc(2026, 1, 5))


@pytest.mark.parametrize(
    ("hours", "align_seconds", "message"),
    [
        (24, 0, "--align must be between 1s and 1d, got 0s"),
        (24, 86_401, "--align must be between 1s and 1d, got 86401s"),
        (0, 300, "--period-hours must be between 1 and 8760, got 0"),
    ],
)
def test_bad_periods_and_alignments_are_usage_errors(hours, align_seconds, message):
    with pytest.raises(UsageError) as raised:
        aligned_period(utc(2026, 1, 5, 10), hours, align_seconds)
    assert raised.value.message == message


# --- time zones and instants -----------------------------------------------------------------


def test_a_known_zone_is_its_zoneinfo():
    assert zone("Europe/Berlin") == BERLIN


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "UTC "])
def test_an_unknown_zone_is_a_usage_error(name):
    with pytest.raises(UsageError) as raised:
        zone(name)
    assert raised.value.message == (
        f"invalid value for --timezone: {name!r} is not an IANA time zone (e.g. Europe/Berlin)"
    )


@pytest.mark.parametrize(
    ("value", "tz", "instant"),
    [
        # a date is midnight in the zone: 00:00 at UTC+1 is 23:00 UTC the day before
        ("2026-01-05", BERLIN, utc(2026, 1, 4, 23)),
        # ... at UTC+2 in summer: 22:00 UTC the day before
        ("2026-07-05", BERLIN, utc(2026, 7, 4, 22)),
        # ... and in UTC, midnight itself; blanks around the value do not count
        ("2026-01-05", UTC, utc(2026, 1, 5)),
        (" 2026-01-05 ", BERLIN, utc(2026, 1, 4, 23)),
        # a date-time without an offset is a wall-clock time in the zone
        ("2026-01-05T10:30", BERLIN, utc(2026, 1, 5, 9, 30)),
        ("2026-01-05 10:30:15", KOLKATA, utc(2026, 1, 5, 5, 0, 15)),
        # with an offset, the offset wins over the zone
        ("2026-01-05T10:30+05:00", BERLIN, utc(2026, 1, 5, 5, 30)),
        ("2026-01-05T10:30Z", BERLIN, utc(2026, 1, 5, 10, 30)),
    ],
)
def test_instants_are_read_in_the_zone_and_returned_in_utc(value, tz, instant):
    parsed = parse_instant(value, tz, "--since")
    assert parsed == instant
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "2026-1-5", "2026-01-05T25:00", ""])
def test_an_unreadable_instant_names_the_option_and_the_value(value):
    with pytest.raises(UsageError) as raised:
        parse_instant(value, UTC, "--until")
    assert raised.value.message == (
        f"--until: {value!r} is not a date (YYYY-MM-DD) or ISO date-time"
    )


# --- backfill: calendar buckets --------------------------------------------------------------


def test_hour_buckets_start_on_the_hour_before_since():
    # since 10:30 floors to 10:00; until 13:00 is the end of the 12:00 bucket
    found = buckets(utc(2026, 1, 5, 10, 30), utc(2026, 1, 5, 13), "hour", UTC, FAR_FUTURE)
    assert spans(found) == [
        (utc(2026, 1, 5, 10), utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 12)),
        (utc(2026, 1, 5, 12), utc(2026, 1, 5, 13)),
    ]


def test_a_bucket_that_until_cuts_is_still_whole():
    # until 12:10 is inside the 12:00 bucket: the whole bucket is computed
    found = buckets(utc(2026, 1, 5, 11), utc(2026, 1, 5, 12, 10), "hour", UTC, FAR_FUTURE)
    assert spans(found) == [
        (utc(2026, 1, 5, 11), utc(2026, 1, 5, 12)),
        (utc(2026, 1, 5, 12), utc(2026, 1, 5, 13)),
    ]


def test_day_buckets_start_at_local_midnight():
    # local days 2026-01-05 and 2026-01-06 in Berlin (UTC+1) start at 23:00 UTC the day before
    since = parse_instant("2026-01-05", BERLIN, "--since")
    until = parse_instant("2026-01-07", BERLIN, "--until")
    assert spans(buckets(since, until, "day", BERLIN, FAR_FUTURE)) == [
        (utc(2026, 1, 4, 23), utc(2026, 1, 5, 23)),
        (utc(2026, 1, 5, 23), utc(2026, 1, 6, 23)),
    ]


def test_the_spring_day_has_23_hours():
    # local 2026-03-28 (24 h, UTC+1), 2026-03-29 (23 h: 02:00 -> 03:00), 2026-03-30 (24 h, UTC+2)
    since = parse_instant("2026-03-28", BERLIN, "--since")
    until = parse_instant("2026-03-31", BERLIN, "--until")
    found = buckets(since, until, "day", BERLIN, FAR_FUTURE)
    assert spans(found) == [
        (utc(2026, 3, 27, 23), utc(2026, 3, 28, 23)),
        (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),
        (utc(2026, 3, 29, 22), utc(2026, 3, 30, 22)),
    ]
    assert lengths_in_hours(found) == [24, 23, 24]


def test_the_autumn_day_has_25_hours():
    # local 2026-10-24 (24 h, UTC+2), 2026-10-25 (25 h: 03:00 -> 02:00), 2026-10-26 (24 h, UTC+1)
    since = parse_instant("2026-10-24", BERLIN, "--since")
    until = parse_instant("2026-10-27", BERLIN, "--until")
    found = buckets(since, until, "day", BERLIN, FAR_FUTURE)
    assert spans(found) == [
        (utc(2026, 10, 23, 22), utc(2026, 10, 24, 22)),
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)),
        (utc(2026, 10, 25, 23), utc(2026, 10, 26, 23)),
    ]
    assert lengths_in_hours(found) == [24, 25, 24]


def test_hour_buckets_are_absolute_hours_across_a_dst_change():
    # local 00:00 to 04:00 on 2026-03-29 in Berlin = 23:00 UTC to 02:00 UTC: three real hours
    # (local 00:00, 01:00 and 03:00; 02:00 local never happens)
    since = parse_instant("2026-03-29T00:00", BERLIN, "--since")
    until = parse_instant("2026-03-29T04:00", BERLIN, "--until")
    assert spans(buckets(since, until, "hour", BERLIN, FAR_FUTURE)) == [
        (utc(2026, 3, 28, 23), utc(2026, 3, 29, 0)),
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1)),
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
    ]


def test_hour_buckets_keep_local_alignment_in_a_half_hour_zone():
    # 10:45 in Kolkata (UTC+5:30) floors to 10:00 local = 04:30 UTC; until 12:00 local = 06:30 UTC
    since = parse_instant("2026-01-05T10:45", KOLKATA, "--since")
    until = parse_instant("2026-01-05T12:00", KOLKATA, "--until")
    assert spans(buckets(since, until, "hour", KOLKATA, FAR_FUTURE)) == [
        (utc(2026, 1, 5, 4, 30), utc(2026, 1, 5, 5, 30)),
        (utc(2026, 1, 5, 5, 30), utc(2026, 1, 5, 6, 30)),
    ]


def test_week_buckets_start_on_monday():
    # Wednesday 2026-01-07 lies in the week of Monday 2026-01-05 (UTC) ...
    found = buckets(utc(2026, 1, 7), utc(2026, 1, 8), "week", UTC, FAR_FUTURE)
    assert spans(found) == [(utc(2026, 1, 5), utc(2026, 1, 12))]
    # ... in Berlin that Monday's midnight is 2026-01-04 23:00 UTC
    since = parse_instant("2026-01-07", BERLIN, "--since")
    until = parse_instant("2026-01-08", BERLIN, "--until")
    assert spans(buckets(since, until, "week", BERLIN, FAR_FUTURE)) == [
        (utc(2026, 1, 4, 23), utc(2026, 1, 11, 23))
    ]


def test_a_week_over_the_spring_change_has_167_hours():
    # Monday 2026-03-23 00:00 local (UTC+1) to Monday 2026-03-30 00:00 local (UTC+2)
    found = buckets(
        parse_instant("2026-03-23", BERLIN, "--since"),
        parse_instant("2026-03-24", BERLIN, "--until"),
        "week",
        BERLIN,
        FAR_FUTURE,
    )
    assert spans(found) == [(utc(2026, 3, 22, 23), utc(2026, 3, 29, 22))]
    assert lengths_in_hours(found) == [167]


def test_until_may_reach_the_end_of_the_current_bucket_not_beyond():
    now = utc(2026, 1, 5, 10, 30)  # the current day bucket (UTC) ends 2026-01-06 00:00
    found = buckets(utc(2026, 1, 4), utc(2026, 1, 6), "day", UTC, now)
    assert spans(found) == [
        (utc(2026, 1, 4), utc(2026, 1, 5)),
        (utc(2026, 1, 5), utc(2026, 1, 6)),  # the current, unfinished bucket
    ]
    with pytest.raises(UsageError) as raised:
        buckets(utc(2026, 1, 4), utc(2026, 1, 6, 0, 0, 1), "day", UTC, now)
    assert raised.value.message == (
        "--until 2026-01-06T00:00:01+00:00 is after the end of the current day "
        "(2026-01-06T00:00:00+00:00)"
    )


@pytest.mark.parametrize(
    ("since", "until"),
    [(utc(2026, 1, 5), utc(2026, 1, 5)), (utc(2026, 1, 5), utc(2026, 1, 1))],
)
def test_since_must_be_before_until(since, until):
    with pytest.raises(UsageError) as raised:
        buckets(since, until, "day", UTC, FAR_FUTURE)
    assert raised.value.message == (
        f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
    )


@pytest.mark.parametrize("bucket", ["month", "Day", ""])
def test_an_unknown_bucket_is_a_usage_error(bucket):
    with pytest.raises(UsageError) as raised:
        buckets(utc(2026, 1, 5), utc(2026, 1, 6), bucket, UTC, FAR_FUTURE)
    assert raised.value.message == f"--bucket must be one of hour, day, week, got {bucket!r}"


def test_more_than_100000_buckets_are_refused():
    # 2000-01-01 to 2012-01-01: 12 x 365 + 3 leap days (2000, 2004, 2008) = 4,383 days
    # = 105,192 hours; the same span in days is 4,383 buckets, which is fine
    with pytest.raises(UsageError) as raised:
        buckets(utc(2000, 1, 1), utc(2012, 1, 1), "hour", UTC, FAR_FUTURE)
    assert raised.value.message == "105192 hour buckets requested; use a coarser --bucket"
    assert len(buckets(utc(2000, 1, 1), utc(2012, 1, 1), "day", UTC, FAR_FUTURE)) == 4383


@pytest.mark.parametrize(
    ("now", "bucket", "tz", "end"),
    [
        (utc(2026, 1, 5, 10, 30), "hour", UTC, utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 10, 30), "day", UTC, utc(2026, 1, 6)),
        # 23:30 UTC is 00:30 on 2026-01-06 in Berlin: that local day ends 2026-01-06 23:00 UTC
        (utc(2026, 1, 5, 23, 30), "day", BERLIN, utc(2026, 1, 6, 23)),
        # Wednesday 2026-01-07: its week ends on Monday 2026-01-12
        (utc(2026, 1, 7, 12), "week", UTC, utc(2026, 1, 12)),
        # the Sunday of the spring change: the local day ends at 22:00 UTC
        (utc(2026, 3, 29, 12), "day", BERLIN, utc(2026, 3, 29, 22)),
    ],
)
def test_current_bucket_end(now, bucket, tz, end):
    assert current_bucket_end(now, bucket, tz) == end
