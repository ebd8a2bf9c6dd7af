"""Quiet hours in the contact's zone: pure functions, checked at fixed instants."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.sender.quiet_hours import (
    Window,
    contact_zones,
    is_allowed,
    next_allowed,
    zones_for_number,
)

DAY = Window.parse("08:00", "21:00")
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_zone_from_area_code_known_zone_and_default() -> None:
    assert zones_for_number("+12125550123") == (NY,)
    assert zones_for_number("14155550123") == (LA,)
    assert zones_for_number("+15551234567") == ()  # fictional 555 area code
    assert zones_for_number("not a number") == ()
    assert contact_zones("+12125550123", "Europe/Madrid", "UTC") == (ZoneInfo("Europe/Madrid"),)
    assert contact_zones("+12125550123", "Not/AZone", "UTC") == (NY,)
    assert contact_zones("+15551234567", None, "America/Chicago") == (ZoneInfo("America/Chicago"),)


def test_inside_window_sends_now() -> None:
    noon_ny = utc(2026, 11, 23, 17, 0)  # 12:00 in New York (EST, UTC-5)
    assert next_allowed(noon_ny, (NY,), DAY, "UTC") == noon_ny


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 03:00 New York -> 08:00 the same local day.
        (utc(2026, 11, 23, 8, 0), datetime(2026, 11, 23, 8, 0, tzinfo=NY)),
        # 21:00 exactly is already quiet -> 08:00 next day.
        (utc(2026, 11, 24, 2, 0), datetime(2026, 11, 24, 8, 0, tzinfo=NY)),
        # 23:30 -> next morning.
        (utc(2026, 11, 24, 4, 30), datetime(2026, 11, 24, 8, 0, tzinfo=NY)),
    ],
)
def test_deferred_to_next_local_morning(now: datetime, expected: datetime) -> None:
    got = next_allowed(now, (NY,), DAY, "UTC")
    assert got == expected
    assert is_allowed(got, (NY,), DAY)


def test_dst_change_uses_local_clock() -> None:
    # The night US clocks go back (2026-11-01): 08:00 local is 13:00 UTC, not 12:00.
    got = next_allowed(utc(2026, 11, 1, 6, 0), (NY,), DAY, "UTC")
    assert got == utc(2026, 11, 1, 13, 0)


def test_several_zones_must_all_be_awake() -> None:
    # 08:30 in New York is 05:30 in Los Angeles: wait for LA's 08:00.
    got = next_allowed(utc(2026, 11, 23, 13, 30), (NY, LA), DAY, "UTC")
    assert got == datetime(2026, 11, 23, 8, 0, tzinfo=LA)


def test_disjoint_zones_fall_back_to_default() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    narrow = Window.parse("09:00", "12:00")
    now = utc(2026, 11, 23, 20, 0)
    got = next_allowed(now, (NY, tokyo), narrow, "Europe/London")
    assert got == datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/London"))


def test_window_over_midnight_and_always() -> None:
    night = Window.parse("22:00", "06:00")
    assert next_allowed(utc(2026, 11, 23, 12, 0), (ZoneInfo("UTC"),), night, "UTC") == utc(
        2026, 11, 23, 22, 0
    )
    assert next_allowed(utc(2026, 11, 23, 3, 0), (ZoneInfo("UTC"),), night, "UTC") == utc(
        2026, 11, 23, 3, 0
    )
    always = Window.parse("00:00", "00:00")
    assert next_allowed(utc(2026, 11, 23, 3, 0), (NY,), always, "UTC") == utc(2026, 11, 23, 3, 0)
