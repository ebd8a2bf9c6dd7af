"""Quiet hours: when a lead-facing message may be sent, in the contact's local time.

The contact's zone is, in order: a zone known for the contact (e.g. a contact
field), the zone(s) the number's country / area code maps to (libphonenumber's
geographic data), else the configured default zone. A number that maps to
several zones (a toll-free number, a country spanning zones) must be inside the
window in *every* one of them; when those windows never overlap, the default
zone decides. Pure functions only: callers pass the current time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezone

_UNKNOWN_ZONE = "Etc/Unknown"
_SEARCH_DAYS = 3


@dataclass(frozen=True)
class Window:
    """Allowed local send times [start, end); end < start spans midnight; start == end: always."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        return cls(time.fromisoformat(start), time.fromisoformat(end))

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zones_for_number(number: str) -> tuple[ZoneInfo, ...]:
    """Zones the number's prefix maps to; empty when unknown or unparsable."""
    try:
        parsed = phonenumbers.parse(number if number.startswith("+") else f"+{number}")
    except phonenumbers.NumberParseException:
        return ()
    names = number_timezone.time_zones_for_number(parsed)
    return tuple(z for n in names if n != _UNKNOWN_ZONE and (z := _zone(n)) is not None)


def contact_zones(number: str, known_zone: str | None, default_zone: str) -> tuple[ZoneInfo, ...]:
    if known_zone and (zone := _zone(known_zone)) is not None:
        return (zone,)
    found = zones_for_number(number)
    if found:
        return found
    return (ZoneInfo(default_zone),)


def is_allowed(moment: datetime, zones: tuple[ZoneInfo, ...], window: Window) -> bool:
    return all(window.contains(moment.astimezone(z).time()) for z in zones)


def _earliest(moment: datetime, zones: tuple[ZoneInfo, ...], window: Window) -> datetime | None:
    if is_allowed(moment, zones, window):
        return moment
    # An intersection of windows opens when the last of them opens, i.e. at some
    # zone's local start time; try those in order.
    candidates = []
    for zone in zones:
        local_day = moment.astimezone(zone).date()
        for offset in range(_SEARCH_DAYS + 1):
            start = datetime.combine(local_day + timedelta(days=offset), window.start, zone)
            if start > moment:
                candidates.append(start.astimezone(moment.tzinfo))
    for candidate in sorted(candidates):
        if is_allowed(candidate, zones, window):
            return candidate
    return None


def next_allowed(
    moment: datetime,
    zones: tuple[ZoneInfo, ...],
    window: Window,
    default_zone: str,
) -> datetime:
    """The first instant at or after ``moment`` (aware) inside the window of every zone."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    found = _earliest(moment, zones, window)
    if found is None:
        found = _earliest(moment, (ZoneInfo(default_zone),), window)
    assert found is not None, "a non-empty window opens within a day"
    return found
