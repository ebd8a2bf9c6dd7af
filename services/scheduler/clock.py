"""Wall-clock time for the scheduler, replaceable in tests.

The firing loop sleeps until the next due timer or until :meth:`Clock.wake` is
called; a :class:`ManualClock` moves time forward and wakes sleepers, so tests
of day-long delays run in milliseconds against the real timer store.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._wakers: set[asyncio.Event] = set()

    def now(self) -> datetime:
        return datetime.now(UTC)

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
