"""When a schedule is next due: 5-field cron expressions in an IANA time zone, or a fixed
interval. Pure functions of an explicit `now`, so tests need no clock tricks.

Cron runs on the wall clock of the schedule's zone (croniter on naive local times, then
placed in the zone with zoneinfo): on a spring-forward day a time inside the gap runs
once, at the same instant as the first time after it; on a fall-back day a wall time
that occurs twice runs once, at its first occurrence. An interval is anchored on the
previous due time, so due times stay exact multiples apart. Either way the next due
time is strictly after `now`: after downtime a schedule runs once, not once per miss.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from croniter import CroniterBadDateError, croniter
from django.conf import settings

MAX_EVERY_SECONDS = 366 * 24 * 3600
MAX_CRON_LENGTH = 200
# Enough for any 5-field expression to reach past one repeated (fall-back) hour.
MAX_STEPS = 10_000
_DURATION = re.compile(
    r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RecurrenceError(ValueError):
    """A bad cron expression, interval or time zone; `field` says which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Recurrence:
    """How a schedule recurs: `cron` in `timezone`, or `every` seconds."""

    cron: str = ""
    every: int | None = None
    timezone: str = "UTC"

    def next_after(self, now: datetime, anchor: datetime | None = None) -> datetime:
        """The first due time strictly after `now` (an interval counts from `anchor`,
        the previous due time, when given)."""
        if self.every is not None:
            return next_every(self.every, now, anchor)
        return next_cron(self.cron, self.timezone, now)


# -- checking what users type --------------------------------------------------------


def check_cron(expression: str) -> str:
    """A 5-field cron expression (minute hour day-of-month month day-of-week), with its
    whitespace normalised; raises RecurrenceError."""
    if not isinstance(expression, str) or not expression.strip():
        raise RecurrenceError("cron", "is required: 5 fields, e.g. '0 7 * * *'")
    if len(expression) > MAX_CRON_LENGTH:
        raise RecurrenceError("cron", f"must be at most {MAX_CRON_LENGTH} characters")
    fields = expression.split()
    if len(fields) != 5:
        raise RecurrenceError(
            "cron",
            f"must have 5 fields (minute hour day month weekday), not {len(fields)}: "
            f"{expression.strip()!r}",
        )
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise RecurrenceError("cron", f"{normalised!r} is not a valid cron expression")
    try:
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise RecurrenceError("cron", f"{normalised!r} never matches a date") from None
    except (ValueError, KeyError, TypeError):
        raise RecurrenceError("cron", f"{normalised!r} is not a valid cron expression") from None
    return normalised


def check_timezone(name: str) -> str:
    """An IANA time zone name known here (e.g. Europe/Paris); raises RecurrenceError."""
    if not isinstance(name, str) or not name.strip():
        raise RecurrenceError("timezone", "is required, e.g. UTC or Europe/Paris")
    name = name.strip()
    if name not in _zone_names():
        raise RecurrenceError("timezone", f"unknown time zone {name[:64]!r}; use an IANA name")
    return name


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def check_every(seconds: int) -> int:
    """An interval in whole seconds, at least CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise RecurrenceError("every", "must be a whole number of seconds, or like 30s, 10m, 1h")
    least = settings.CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS
    if seconds < least:
        raise RecurrenceError(
            "every", f"must be at least {least} seconds (CONVEYOR_SCHEDULE_MIN_EVERY_SECONDS)"
        )
    if seconds > MAX_EVERY_SECONDS:
        raise RecurrenceError("every", f"must be at most {MAX_EVERY_SECONDS} seconds (366 days)")
    return seconds


def parse_every(value: str | int) -> int:
    """`30s`, `10m`, `1h`, `1d` or a number of seconds, checked by `check_every`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_every(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise RecurrenceError(
            "every", f"{str(value)[:40]!r} is not an interval like 30s, 10m, 1h, 1d"
        )
    unit = (match.group(2) or "s")[0]
    return check_every(int(match.group(1)) * _UNIT_SECONDS[unit])


def recurrence(
    *, cron: str = "", every: str | int | None = None, timezone: str = "UTC"
) -> Recurrence:
    """A checked Recurrence from what a user gave: exactly one of `cron` and `every`."""
    if cron and every is not None:
        raise RecurrenceError("cron", "give either cron or every, not both")
    if not cron and every is None:
        raise RecurrenceError("cron", "give a cron expression or an every interval")
    zone = check_timezone(timezone or "UTC")
    if every is not None:
        return Recurrence(every=parse_every(every), timezone=zone)
    return Recurrence(cron=check_cron(cron), timezone=zone)


# -- next due times ------------------------------------------------------------------


def next_every(every: int, now: datetime, anchor: datetime | None = None) -> datetime:
    """`anchor + k * every` for the smallest k that lands strictly after `now` (`now +
    every` without an anchor)."""
    step = timedelta(seconds=every)
    if anchor is None:
        return now + step
    if anchor > now:
        return anchor
    missed = (now - anchor) // step
    return anchor + (missed + 1) * step


def next_cron(expression: str, zone_name: str, now: datetime) -> datetime:
    """The first time strictly after `now` whose wall-clock time in `zone_name` matches
    `expression` (in UTC).

    croniter walks naive wall times from a little before `now`'s; each becomes an
    instant in the zone (`_instants`) and the earliest instant after `now` wins. As the
    instants of successive wall times never go down, the walk stops at the first one
    past the best found.
    """
    zone = zoneinfo.ZoneInfo(zone_name)
    wildcard = any("*" in field for field in expression.split()[:2])
    walker = croniter(expression, _earliest_wall(now, zone))
    best: datetime | None = None
    for _ in range(MAX_STEPS):
        wall = walker.get_next(datetime)
        instants = _instants(wall, zone, repeat=wildcard)
        if best is not None and instants[0] >= best:
            return best
        for instant in instants:
            if instant > now and (best is None or instant < best):
                best = instant
    if best is not None:
        return best
    raise RecurrenceError("cron", f"{expression!r} has no due time after {now.isoformat()}")


def _earliest_wall(now: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The wall time to start walking from: `now` at the smallest UTC offset in force
    within 3 hours, so that the second pass of a repeated (fall-back) hour is seen."""
    offsets = [(now + timedelta(hours=h)).astimezone(zone).utcoffset() for h in (-3, 0, 3)]
    return (now + min(o for o in offsets if o is not None)).replace(tzinfo=None)


def _instants(wall: datetime, zone: zoneinfo.ZoneInfo, *, repeat: bool) -> list[datetime]:
    """The instants (UTC) a cron wall time stands for.

    Normally one. A wall time the clocks skipped (spring forward) stands for the first
    instant after the gap, so the skipped runs happen once, when the clocks jump. A wall
    time that occurs twice (fall back) stands for its first occurrence; with `repeat`
    (a `*` in the minute or hour field, as Vixie cron does) for both, as such
    expressions follow elapsed time.
    """
    first = wall.replace(tzinfo=zone)
    second = wall.replace(tzinfo=zone, fold=1)
    early = first.astimezone(UTC)
    if first.utcoffset() == second.utcoffset():
        return [early]
    if early.astimezone(zone).replace(tzinfo=None) != wall:
        return [_end_of_gap(wall, zone)]
    return [early, second.astimezone(UTC)] if repeat else [early]


def _end_of_gap(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first instant whose wall time is at or after `wall`, a time inside a gap."""
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())  # wall time before the gap
    high = int(wall.replace(tzinfo=zone).timestamp())  # wall time after it
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
