"""Wall-clock time for the scheduler, replaceable in tests.

The firing loop sleeps until the next due timer or until :meth:`Clock.wake` is
called; a :class:`ManualClock` moves time forward and wakes sleepers, so tests
of day-long delays run in milliseconds against the real timer store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from libs.events import utcnow


class Clock:
    """A ``libs.service.Clock`` (call it for the time) that the firing loop can also sleep on."""

    def __init__(self, now: Callable[[], datetime] = utcnow) -> None:
        self._now = now
        self._wakers: set[asyncio.Event] = set()

    def now(self) -> datetime:
        return self._now()

    def __call__(self) -> datetime:
        return self.now()

    async def sleep(self, seconds: float, wake: asyncio.Event) -> None:
        """Sleep up to ``seconds``; return early when ``wake`` is set or the clock jumps."""
        self._wakers.add(wake)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(seconds, 0.0))
        finally:
            self._wakers.discard(wake)
            wake.clear()

    def wake_all(self) -> None:
        for event in list(self._wakers):
            event.set()


class ManualClock(Clock):
    """Real time plus an offset that tests advance."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> None:
        self.offset += delta if delta is not None else timedelta(**kwargs)
        self.wake_all()
