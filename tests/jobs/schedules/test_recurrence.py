"""When a schedule is next due (jobs/schedules/recurrence.py): cron in a time zone across
daylight-saving changes, intervals anchored on the previous due time, and what users
may type. Every `now` is explicit: no clock is patched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.schedules.recurrence import (
    Recurrence,
    RecurrenceError,
    check_cron,
    check_timezone,
    next_cron,
    next_every,
    parse_every,
    recurrence,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def due_times(expression: str, zone: str, start: datetime, until: datetime) -> list[datetime]:
    """Every due time in (start, until], as a schedule that runs each one would see them."""
    found = []
    now = start
    while (now := next_cron(expression, zone, now)) <= until:
        found.append(now)
    return found


def local(times: list[datetime], zone: ZoneInfo = PARIS) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in times]


# -- cron in a time zone -------------------------------------------------------------------


def test_daily_cron_is_due_at_its_wall_clock_time_in_the_schedules_zone():
    now = utc(2026, 1, 15, 12, 0)
    assert next_cron("0 7 * * *", "Europe/Paris", now) == utc(2026, 1, 16, 6, 0)  # CET, +1
    assert next_cron("0 7 * * *", "Europe/Paris", utc(2026, 7, 1, 12)) == utc(2026, 7, 2, 5, 0)
    assert next_cron("0 7 * * *", "UTC", now) == utc(2026, 1, 16, 7, 0)


def test_next_due_time_is_strictly_after_now():
    due = utc(2026, 1, 16, 6, 0)
    assert next_cron("0 7 * * *", "Europe/Paris", due) == due + timedelta(days=1)
    assert next_cron("0 7 * * *", "Europe/Paris", due - timedelta(microseconds=1)) == due


def test_a_daily_run_in_the_spring_forward_gap_runs_once_when_the_clocks_jump():
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    times = due_times("30 2 * * *", "Europe/Paris", utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    assert local(times) == [
        "03-28 02:30 CET",
        "03-29 03:00 CEST",  # once, as the clocks jump over 02:30
        "03-30 02:30 CEST",
        "03-31 02:30 CEST",
    ]


def test_a_daily_run_in_the_repeated_fall_back_hour_runs_once():
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice that day.
    times = due_times("30 2 * * *", "Europe/Paris", utc(2026, 10, 23, 12), utc(2026, 10, 27, 12))
    assert local(times) == [
        "10-24 02:30 CEST",
        "10-25 02:30 CEST",  # the first 02:30 only
        "10-26 02:30 CET",
        "10-27 02:30 CET",
    ]


def test_a_daily_run_outside_the_changed_hour_keeps_its_wall_time_across_both_changes():
    spring = due_times("0 7 * * *", "Europe/Paris", utc(2026, 3, 28, 0), utc(2026, 3, 30, 12))
    fall = due_times("0 7 * * *", "Europe/Paris", utc(2026, 10, 24, 0), utc(2026, 10, 26, 12))
    assert local(spring) == ["03-28 07:00 CET", "03-29 07:00 CEST", "03-30 07:00 CEST"]
    assert local(fall) == ["10-24 07:00 CEST", "10-25 07:00 CET", "10-26 07:00 CET"]
    assert [t.hour for t in spring] == [6, 5, 5]  # the UTC hour moves with the offset


def test_an_hourly_cron_follows_elapsed_time_across_both_changes():
    # Wildcard hours run by elapsed time (as Vixie cron does): every real hour, once.
    spring = due_times("0 * * * *", "Europe/Paris", utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 3))
    fall = due_times("0 * * * *", "Europe/Paris", utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3))
    assert spring == [utc(2026, 3, 29, h) for h in (0, 1, 2, 3)]
    assert local(spring) == [
        "03-29 01:00 CET",
        "03-29 03:00 CEST",
        "03-29 04:00 CEST",
        "03-29 05:00 CEST",
    ]
    assert fall == [utc(2026, 10, 24, 23)] + [utc(2026, 10, 25, h) for h in (0, 1, 2, 3)]
    assert local(fall)[1:3] == ["10-25 02:00 CEST", "10-25 02:00 CET"]


def test_a_quarter_hourly_cron_asked_during_the_second_pass_of_the_repeated_hour():
    # 01:10 UTC is 02:10 CET, the second 02:10 of the day: next is 02:15 CET, not 03:00.
    assert next_cron("*/15 * * * *", "Europe/Paris", utc(2026, 10, 25, 1, 10)) == utc(
        2026, 10, 25, 1, 15
    )
    # ...and during the first pass the second one still comes after the first.
    assert next_cron("*/15 * * * *", "Europe/Paris", utc(2026, 10, 25, 0, 50)) == utc(
        2026, 10, 25, 1, 0
    )


def test_new_york_spring_forward_and_fall_back():
    # 2026-03-08: 02:00 EST becomes 03:00 EDT. 2026-11-01: 02:00 EDT becomes 01:00 EST,
    # so there it is 01:30 that happens twice.
    spring = due_times("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    fall = due_times("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert local(spring, NEW_YORK) == ["03-08 03:00 EDT", "03-09 02:30 EDT"]
    assert local(fall, NEW_YORK) == ["11-01 01:30 EDT", "11-02 01:30 EST"]


def test_weekday_and_month_fields_count_in_the_schedules_zone():
    # Monday 00:30 in Tokyo is Sunday 15:30 UTC.
    assert next_cron("30 0 * * 1", "Asia/Tokyo", utc(2026, 6, 1, 0)) == utc(2026, 6, 7, 15, 30)


# -- intervals -------------------------------------------------------------------------------


def test_an_interval_counts_from_the_previous_due_time_and_skips_what_was_missed():
    anchor = utc(2026, 1, 1, 12, 0, 0)
    assert next_every(10, anchor + timedelta(seconds=0.4), anchor) == anchor + timedelta(seconds=10)
    # Down for 35 s: the next due time is the first multiple after now, not four catch-ups.
    assert next_every(10, anchor + timedelta(seconds=35), anchor) == anchor + timedelta(seconds=40)
    assert next_every(10, anchor + timedelta(seconds=40), anchor) == anchor + timedelta(seconds=50)
    assert next_every(10, anchor, None) == anchor + timedelta(seconds=10)


def test_recurrence_next_after_uses_cron_or_interval():
    now = utc(2026, 1, 1, 12)
    assert Recurrence(every=60).next_after(now) == now + timedelta(minutes=1)
    assert Recurrence(cron="0 13 * * *", timezone="UTC").next_after(now) == utc(2026, 1, 1, 13)


# -- what users may type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400), ("45", 45), (90, 90), ("2 min", 120)],
)
def test_intervals_are_read_as_durations(settings, text, seconds):
    settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = 5
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5", "1.5h", True, None])
def test_bad_intervals_are_refused(text):
    with pytest.raises(RecurrenceError) as raised:
        parse_every(text)
    assert raised.value.field == "every"


def test_an_interval_shorter_than_the_setting_is_refused(settings):
    settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS = 5
    with pytest.raises(RecurrenceError, match="at least 5 seconds"):
        parse_every("4s")
    with pytest.raises(RecurrenceError, match="at most"):
        parse_every("400d")


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "0 0 7 * * *", "61 * * * *", "0 25 * * *", "every day", "0 0 31 2 *"],
)
def test_bad_cron_expressions_are_refused_with_the_reason(expression):
    with pytest.raises(RecurrenceError) as raised:
        check_cron(expression)
    assert raised.value.field == "cron"


def test_cron_whitespace_is_normalised():
    assert check_cron("  0   7 * *  1-5 ") == "0 7 * * 1-5"


def test_time_zones_are_iana_names():
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    assert check_timezone("UTC") == "UTC"
    for bad in ["Mars/Olympus", "../../etc/passwd", "", "CEST"]:
        with pytest.raises(RecurrenceError) as raised:
            check_timezone(bad)
        assert raised.value.field == "timezone"


def test_exactly_one_of_cron_and_every():
    with pytest.raises(RecurrenceError, match="either"):
        recurrence(cron="0 7 * * *", every=60)
    with pytest.raises(RecurrenceError, match="give a cron"):
        recurrence()
    assert recurrence(cron="0 7 * * *", timezone="Europe/Paris") == Recurrence(
        cron="0 7 * * *", timezone="Europe/Paris"
    )
