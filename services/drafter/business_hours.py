"""Opening hours of the business profile: is it open now, and when does it open next.

Pure functions over the profile's ``opening_hours`` (per weekday ``HH:MM-HH:MM``
ranges in the business's time zone, plus closed dates). A *closed period* is named
by the opening that ends it: every message between Saturday 13:00 and Monday 08:00
belongs to the period that ends at Monday 08:00, so one acknowledgement per period
is one per (thread, next opening).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
#: How far ahead the next opening is searched (a long holiday list cannot loop forever).
SEARCH_DAYS = 400


class HoursError(ValueError):
    """The opening hours in the profile are malformed (the message names the field)."""


class OpeningHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``weekly: {mon: ["08:00-12:00", "13:00-18:00"], sun: []}``; a day left out is closed."""

    timezone: str
    weekly: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    #: Closed dates (``2030-12-25``), in the business's time zone.
    holidays: tuple[date, ...] = ()

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ranges(self, day: date) -> list[tuple[time, time | None]]:
        """The day's opening ranges; an end of ``None`` means midnight (24:00)."""
        if day in self.holidays:
            return []
        out = []
        for text in self.weekly.get(WEEKDAYS[day.weekday()], ()):
            start, end = parse_range(text)
            out.append((start, end))
        return out


def parse_range(text: str) -> tuple[time, time | None]:
    match = _RANGE.match(text.strip())
    if not match:
        raise HoursError(f"{text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 != 0:
        raise HoursError(f"{text!r}: 24:00 is the latest end")
    start = time(h1, m1)
    end = None if h2 == 24 else time(h2, m2)
    if end is not None and end <= start:
        raise HoursError(f"{text!r}: the end must be after the start (split ranges over midnight)")
    return start, end


def check(hours: OpeningHours) -> None:
    """Raise HoursError for an unknown zone, weekday or malformed range."""
    try:
        hours.zone()
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursError(f"unknown timezone {hours.timezone!r}") from exc
    for day, ranges in hours.weekly.items():
        if day not in WEEKDAYS:
            raise HoursError(f"weekly: unknown day {day!r} (use {', '.join(WEEKDAYS)})")
        for text in ranges:
            parse_range(text)


def is_open(hours: OpeningHours, now: datetime) -> bool:
    local = now.astimezone(hours.zone())
    moment = local.time().replace(tzinfo=None)
    for start, end in hours.ranges(local.date()):
        if start <= moment and (end is None or moment < end):
            return True
    return False


def next_opening(hours: OpeningHours, now: datetime) -> datetime | None:
    """The first opening at or after ``now`` (aware, in the business's zone), or None."""
    zone = hours.zone()
    local = now.astimezone(zone)
    for offset in range(SEARCH_DAYS):
        day = local.date() + timedelta(days=offset)
        for start, _ in sorted(hours.ranges(day), key=lambda r: r[0]):
            candidate = datetime.combine(day, start, tzinfo=zone)
            if candidate >= local:
                return candidate
    return None


def opening_text(moment: datetime, now: datetime, language: str) -> str:
    """'8am', '8:30am tomorrow', '8am Monday' (or in Spanish) for the acknowledgement."""
    local_now = now.astimezone(moment.tzinfo)
    days = (moment.date() - local_now.date()).days
    if language == "es":
        clock = f"las {moment.hour}:{moment.minute:02d}"
        names = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
        if days == 0:
            return clock
        if days == 1:
            return f"mañana a {clock}"
        if days < 7:
            return f"el {names[moment.weekday()]} a {clock}"
        return f"el {moment.date():%d/%m} a {clock}"
    hour = moment.hour % 12 or 12
    suffix = "am" if moment.hour < 12 else "pm"
    clock = f"{hour}{suffix}" if moment.minute == 0 else f"{hour}:{moment.minute:02d}{suffix}"
    if days == 0:
        return clock
    if days == 1:
        return f"{clock} tomorrow"
    return f"{clock} {moment.strftime('%A')}" if days < 7 else f"{clock} on {moment.date():%b %d}"
