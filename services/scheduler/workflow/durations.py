"""When a delay or a wait_for_reply timeout ends."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .model import UNIT_SECONDS, DelayConfig, WaitForReplyConfig


def parse_time_of_day(text: str) -> time:
    """``"09:30"`` -> time(9, 30); raises ValueError on anything else."""
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(f"time of day {text!r} is not HH:MM")
    return time(int(hours), int(minutes))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown timezone {name!r}") from err


def delay_end(config: DelayConfig, now: datetime) -> datetime:
    """``now`` plus the duration, or the next ``until`` time of day strictly after ``now``."""
    if config.until is not None:
        local_now = now.astimezone(zone(config.timezone))
        target = datetime.combine(local_now.date(), parse_time_of_day(config.until), local_now.tzinfo)
        if target <= local_now:
            target = datetime.combine(local_now.date() + timedelta(days=1), target.timetz())
        return target.astimezone(now.tzinfo)
    assert config.duration is not None  # validation requires duration or until
    return now + timedelta(seconds=config.duration * UNIT_SECONDS[config.unit])


def timeout_end(config: WaitForReplyConfig, now: datetime) -> datetime:
    return now + timedelta(seconds=config.timeout * UNIT_SECONDS[config.unit])
