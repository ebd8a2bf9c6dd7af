"""Durable timers in a JetStream KV bucket, fired as ``timer.fired`` events.

Storage: one key per timer (the timer id, base64url-encoded when it holds
characters KV keys do not allow); the value is a :class:`TimerRecord`.
The bucket is the only source of truth. Every replica follows it into an
in-memory view (timer_view.py), saved now and then so that a restart need not
read every key (timer_snapshots.py), and fires from that view.

Firing a due timer (every replica may try):

0. read its record; unless the key still holds the revision the view has, stop
   (cancelled or re-set: the follower brings the change);
1. publish ``timer.fired`` with ``Nats-Msg-Id = timer.fired:<timer id>:<fire_at>``:
   the stream keeps one event however many replicas (or retries after a
   crash) publish it;
2. claim the key with a compare-and-purge on the revision the replica saw
   (``Nats-Expected-Last-Subject-Sequence``): exactly one replica succeeds, and
   a timer re-set in the meantime is left alone. The purge marker carries a
   TTL so the server drops it; the bucket holds only pending timers and a
   restart reads nothing else.

Publishing before claiming means a crash between the two re-fires the timer
after restart, and the duplicate window drops the copy.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import re
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import structlog
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import APIError, BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_OP, KV_PURGE, KeyValue

from libs import metrics
from libs.bus import Bus
from libs.events import OutboundRequested, TimerFired, TimerKind, encode
from libs.tracing import outgoing_traceparent

from .clock import Clock
from .settings import SchedulerSettings
from .timer_snapshots import Snapshots
from .timer_view import KINDS, Entry, Follower, View, kind_of

log = structlog.get_logger("timers")

_KEY_OK = re.compile(r"[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*")
_WRONG_LAST_SEQUENCE = (10071, 10164)
_FIRED_TAG = "timer.fired"

Outcome = Literal["fired", "fired_late", "skipped", "escalated"]
_POLICY_OUTCOME: dict[str, Outcome] = {
    "fire_late": "fired_late",
    "skip": "skipped",
    "escalate": "escalated",
}


class TimerRecord(msgspec.Struct, frozen=True, kw_only=True):
    timer_id: str
    kind: TimerKind
    fire_at: datetime
    thread: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    set_at: datetime | None = None


_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(TimerRecord).decode

#: Called after this replica claimed an overdue timer it skipped or escalated (for the audit log).
OverdueHook = Callable[[TimerRecord, Outcome, float], Awaitable[None]]


def key_for(timer_id: str) -> str:
    if _KEY_OK.fullmatch(timer_id) and not timer_id.startswith("b64_"):
        return timer_id
    return "b64_" + base64.urlsafe_b64encode(timer_id.encode()).decode()


class TimerStore:
    def __init__(
        self,
        bus: Bus,
        settings: SchedulerSettings,
        clock: Clock | None = None,
        *,
        on_overdue: OverdueHook | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.clock = clock or Clock()
        self.bucket = bus.kv_name("timers")
        # The bucket's stream and the prefix of its keys' subjects, as JetStream KV names them.
        stream = f"KV_{self.bucket}"
        self._prefix = f"$KV.{self.bucket}."
        self.on_overdue = on_overdue
        self.kv: KeyValue | None = None
        self._view = View()
        self._view.in_use = True
        self._firing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._snapshots = Snapshots(bus, settings, stream)
        self._follower = Follower(
            bus=bus,
            stream=stream,
            prefix=self._prefix,
            load=self._snapshots.load,
            use=self._use,
            wake=self._wake,
        )
        #: Seconds between due time and publish of the last fired timers (benchmarks).
        self.lateness: deque[float] = deque(maxlen=100_000)
        self.fired = 0
        self.claims = 0
        self.loaded_in_s = 0.0
        #: How the last load started: "snapshot" or "full" (benchmarks, logs).
        self.loaded_from = ""

    # --- bucket ------------------------------------------------------------

    async def open(self) -> KeyValue:
        if self.kv is None:
            try:
                self.kv = await self.bus.js.key_value(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                # history=1: only the live value of a timer is kept. The client
                # creates the stream with per-message TTLs allowed (for markers).
                self.kv = await self.bus.js.create_key_value(
                    KeyValueConfig(
                        bucket=self.bucket,
                        history=1,
                        storage=StorageType.FILE,
                        replicas=self.settings.nats_replicas,
                    )
                )
        return self.kv

    @property
    def pending(self) -> int:
        return len(self._view.entries)

    @property
    def snapshots_saved(self) -> int:
        return self._snapshots.saved

    # --- set / cancel --------------------------------------------------------

    async def set(
        self,
        timer_id: str,
        kind: TimerKind,
        fire_at: datetime,
        *,
        thread: str,
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Create or replace a timer; returns its KV revision."""
        kv = await self.open()
        record = TimerRecord(
            timer_id=timer_id,
            kind=kind,
            fire_at=fire_at.astimezone(UTC),
            thread=thread,
            payload=payload or {},
            set_at=self.clock.now(),
        )
        revision = await kv.put(key_for(timer_id), _encode(record))
        metrics.TIMERS.labels(kind, "set").inc()
        return revision

    async def cancel(self, timer_id: str) -> bool:
        """Remove a pending timer; False when there was none."""
        kv = await self.open()
        key = key_for(timer_id)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return False
        removed = await self._purge(key, last=None)
        if removed:
            metrics.TIMERS.labels(kind_of(entry.value), "cancelled").inc()
        return removed

    async def get(self, timer_id: str) -> TimerRecord | None:
        kv = await self.open()
        try:
            entry = await kv.get(key_for(timer_id))
        except KeyNotFoundError:
            return None
        return _decode_record(entry.value) if entry.value else None

    async def _purge(self, key: str, last: int | None) -> bool:
        """Purge ``key`` (only at revision ``last`` when given); False when that lost a race."""
        headers = {
            KV_OP: KV_PURGE,
            "Nats-Rollup": "sub",
            # The marker only has to reach live watchers; the server then drops it.
            "Nats-TTL": str(max(1, int(self.settings.timer_marker_ttl_s))),
        }
        if last is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(last)
        try:
            await self.bus.js.publish(self._prefix + key, b"", headers=headers)
        except APIError as err:
            if err.err_code in _WRONG_LAST_SEQUENCE:
                return False  # another replica claimed it, or the timer was re-set
            raise
        return True

    # --- the view -----------------------------------------------------------------

    def _use(self, view: View, source: str, seconds: float) -> None:
        """Fire from ``view``, which the follower has just loaded (from ``source``)."""
        self._view.in_use = False
        view.in_use = True
        self._view = view
        view.show_pending(*KINDS, *view.pending)
        self.loaded_in_s = seconds
        self.loaded_from = source
        log.info("timers_loaded", pending=len(view.entries), seconds=round(seconds, 3), source=source)
        self.ready.set()
        self._wake.set()

    async def save_snapshot(self) -> bool:
        """Save the current view (when loaded); True when saved."""
        return await self._snapshots.save(self._view)

    # --- firing ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the bucket and fire due timers until ``stop`` is set."""
        await self.open()
        follow = asyncio.create_task(self._follower.run(stop), name="timers-follow")
        snapshots = asyncio.create_task(
            self._snapshots.run(lambda: self._view, stop), name="timers-snapshots"
        )
        stopper = asyncio.create_task(self._wake_on(stop))
        try:
            await self._fire_loop(stop)
        finally:
            stopper.cancel()
            follow.cancel()
            snapshots.cancel()
            await asyncio.gather(follow, snapshots, stopper, return_exceptions=True)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _fire_loop(self, stop: asyncio.Event) -> None:
        limit = asyncio.Semaphore(self.settings.timer_fire_concurrency)
        while not stop.is_set():
            now = self.clock.now().timestamp()
            view = self._view
            heap = view.heap
            while heap and heap[0][0] <= now:
                _due, revision, key = heapq.heappop(heap)
                entry = view.entries.get(key)
                if entry is None or entry[1] != revision or key in self._firing:
                    continue  # stale heap item: re-set, cancelled or already firing
                self._firing.add(key)
                task = asyncio.create_task(self._fire(view, key, entry, limit))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            wait = heap[0][0] - now if heap else self.settings.timer_max_sleep_s
            await self.clock.sleep(min(wait, self.settings.timer_max_sleep_s), self._wake)

    async def _fire(self, view: View, key: str, entry: Entry, limit: asyncio.Semaphore) -> None:
        try:
            async with limit:
                await self._claim(view, key, entry)
        except Exception as exc:
            # NATS unreachable: try again shortly; the key is still in the bucket.
            log.warning("timer_fire_failed", key=key, error=repr(exc))
            await asyncio.sleep(0.5)
            if view.entries.get(key) == entry:
                heapq.heappush(view.heap, (entry[0], entry[1], key))
                self._wake.set()
        finally:
            self._firing.discard(key)

    async def _claim(self, view: View, key: str, entry: Entry) -> None:
        revision = entry[1]
        kv = await self.open()
        try:
            live = await kv.get(key)
        except KeyNotFoundError:
            live = None
        if live is None or live.revision != revision or not live.value:
            # Gone (a deletion the view missed: see the module doc) or re-set since:
            # nothing to fire; a newer value reaches the view through the follower.
            if live is None and view.entries.get(key) == entry:
                view.show_pending(view.drop(key))
            return
        record = _decode_record(live.value)
        now = self.clock.now()
        lateness = (now - record.fire_at).total_seconds()
        outcome: Outcome = "fired"
        if lateness > self.settings.timer_overdue_after_s:
            outcome = _POLICY_OUTCOME[self.settings.overdue_policy(record.kind)]
        if outcome in ("fired", "fired_late"):
            await self._publish_fired(
                TimerFired(
                    thread=record.thread,
                    timer_id=record.timer_id,
                    kind=record.kind,
                    fire_at=record.fire_at,
                    fired_at=now,
                    late=outcome == "fired_late",
                    payload=record.payload,
                )
            )
        elif outcome == "escalated":
            await self._escalate(record, lateness)
        claimed = await self._purge(key, last=revision)
        if view.entries.get(key) == entry:
            view.show_pending(view.drop(key))
        if not claimed:
            return
        self.claims += 1
        # Counted by the one replica that claimed the timer (others may have published too).
        metrics.TIMERS.labels(record.kind, "fired" if outcome == "fired_late" else outcome).inc()
        if outcome in ("fired", "fired_late"):
            self.fired += 1
            self.lateness.append(max(lateness, 0.0))
        overdue = outcome in ("skipped", "escalated")
        (log.warning if overdue else log.debug)(
            "timer_" + outcome,
            timer_id=record.timer_id,
            kind=record.kind,
            lateness_s=round(lateness, 3),
            thread=record.thread,
        )
        if overdue and self.on_overdue is not None:
            await self.on_overdue(record, outcome, lateness)

    async def _publish_fired(self, event: TimerFired) -> None:
        """``bus.publish`` with the subject and Nats-Msg-Id spelled out.

        Same subject and id as ``event.subject()`` / ``event.dedup_id()``, which
        look the tag up through msgspec.inspect on every call: too slow for a
        burst of thousands of timers.
        """
        await self.bus.js.publish(
            self.bus.subject_for(_FIRED_TAG, event.thread),
            encode(event),
            headers={
                "Nats-Msg-Id": f"{_FIRED_TAG}:{event.timer_id}:{event.fire_at}",
                "traceparent": outgoing_traceparent(),
            },
        )

    async def _escalate(self, record: TimerRecord, lateness: float) -> None:
        hours = lateness / 3600
        body = (
            f"Replyline: a {record.kind.replace('_', ' ')} timer for +{record.thread} was due "
            f"{record.fire_at:%Y-%m-%d %H:%M} UTC and is {hours:.1f} h overdue; it was not run. "
            "Please check this conversation on the dashboard."
        )
        for number in self.settings.owner_numbers:
            await self.bus.publish(
                OutboundRequested(
                    thread=record.thread,
                    request_id=f"timer-overdue:{record.timer_id}:{record.fire_at.isoformat()}:{number}",
                    to_number=number,
                    body=body,
                    kind="owner_alert",
                )
            )
