"""Durable timers in a JetStream KV bucket, fired as ``timer.fired`` events.

Storage: one key per timer (the timer id, base64url-encoded when it holds
characters KV keys do not allow); the value is a :class:`TimerRecord`.
The bucket is the only source of truth. Every replica follows it with an
ordered consumer (last value per key on start, then every change) into an
in-memory heap of ``(due, revision, key)`` and a map key -> (due, revision,
kind), so all replicas see the same set and a restart loses nothing. The record
itself stays in the bucket and is read when the timer fires.

Restart at a million pending timers: reading every key costs ~25 µs of client
CPU per message (nats-py's parser alone ~10 µs): 25 s for 1,000,000 on a quiet
2-core machine, 115-140 s on a busy one. So each
replica saves a snapshot of its view every ``timer_snapshot_interval_s`` (once
``timer_snapshot_min_pending`` timers are pending) in the object store bucket
``timers_snapshot``: the bucket's stream sequence it covers plus the columns key,
due, revision, kind (msgpack, zlib). A restart loads that and follows the bucket
from the next sequence only. A timer deleted after the snapshot whose purge
marker has already expired is not seen as deleted: it stays in the view until it
comes due, and firing reads the live record first, so it is then dropped
without firing (a re-set one is likewise seen at its new revision).

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
import contextlib
import gc
import heapq
import io
import re
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
)
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from libs import metrics
from libs.bus import Bus
from libs.events import OutboundRequested, TimerFired, TimerKind, encode
from libs.tracing import outgoing_traceparent

from .clock import Clock
from .settings import SchedulerSettings

log = structlog.get_logger("timers")

_KEY_OK = re.compile(r"[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*")
_WRONG_LAST_SEQUENCE = (10071, 10164)
_MARKER_REASON = "Nats-Marker-Reason"
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


class _Head(msgspec.Struct):
    """The part of a record the heap needs; decoding skips the rest."""

    fire_at: datetime
    kind: str = ""


class _Snapshot(msgspec.Struct, array_like=True):
    """A view as saved in the object store: columns, one row per pending timer."""

    stream_created: str  # the KV stream's creation time: a re-created bucket voids the snapshot
    seq: int  # last stream sequence of the bucket the view had applied
    kind_names: list[str]
    keys: list[str]
    dues: list[float]
    revisions: list[int]
    kinds: list[int]  # index into kind_names


_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(TimerRecord).decode
_decode_head = msgspec.json.Decoder(_Head).decode
_encode_snapshot = msgspec.msgpack.Encoder().encode
_decode_snapshot = msgspec.msgpack.Decoder(_Snapshot).decode
_SNAPSHOT_OBJECT = "view"

#: Called after this replica claimed an overdue timer it skipped or escalated (for the audit log).
OverdueHook = Callable[[TimerRecord, Outcome, float], Awaitable[None]]
Entry = tuple[float, int, str]  # due (epoch s), revision, kind


_KINDS: tuple[str, ...] = get_args(TimerKind)
#: One string object per kind, shared by every entry (a million timers, five kinds).
_INTERNED: dict[str, str] = {k: k for k in _KINDS}


def _kind_of(raw: bytes | None) -> str:
    try:
        return _decode_head(raw or b"").kind or "unknown"
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unknown"


def key_for(timer_id: str) -> str:
    if _KEY_OK.fullmatch(timer_id) and not timer_id.startswith("b64_"):
        return timer_id
    return "b64_" + base64.urlsafe_b64encode(timer_id.encode()).decode()


class _View:
    """One consistent picture of the bucket, filled by one ordered consumer."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.loaded = asyncio.Event()
        self.pending: Counter[str] = Counter()
        #: Last stream sequence applied (what a snapshot of this view covers).
        self.seq = 0

    def put(self, key: str, entry: Entry) -> str | None:
        """Add or replace ``key``; returns the kind it had before (None when new)."""
        old = self.entries.get(key)
        self.entries[key] = entry
        kind = entry[2]
        if old is None:
            self.pending[kind] += 1
            return None
        if old[2] != kind:
            self.pending[old[2]] -= 1
            self.pending[kind] += 1
        return old[2]

    def drop(self, key: str) -> str | None:
        """Remove ``key``; returns its kind (None when it was not there)."""
        old = self.entries.pop(key, None)
        if old is None:
            return None
        self.pending[old[2]] -= 1
        return old[2]

    def fill(self, snap: _Snapshot) -> None:
        """Start from a snapshot (the heap is heapified once loading ends)."""
        names = [_INTERNED.get(n, n) for n in snap.kind_names]
        kinds = [names[i] for i in snap.kinds]
        self.entries = dict(zip(snap.keys, zip(snap.dues, snap.revisions, kinds, strict=True), strict=True))
        self.heap = list(zip(snap.dues, snap.revisions, snap.keys, strict=True))
        self.pending = Counter(kinds)
        self.seq = snap.seq

    async def snapshot(self, stream_created: str, step: int = 50_000) -> _Snapshot:
        """The view's columns, built a slice at a time so that due timers keep firing."""
        keys, values, seq = list(self.entries), list(self.entries.values()), self.seq  # one picture
        names = list(self.pending)
        code = {n: i for i, n in enumerate(names)}
        dues: list[float] = []
        revisions: list[int] = []
        kinds: list[int] = []
        for first in range(0, len(values), step):
            part = values[first : first + step]
            dues += [v[0] for v in part]
            revisions += [v[1] for v in part]
            kinds += [code[v[2]] for v in part]
            await asyncio.sleep(0)
        return _Snapshot(
            stream_created=stream_created,
            seq=seq,
            kind_names=names,
            keys=keys,
            dues=dues,
            revisions=revisions,
            kinds=kinds,
        )


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
        self.on_overdue = on_overdue
        self.kv: KeyValue | None = None
        self._snapshots: ObjectStore | None = None
        self._view = _View()
        self._firing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        #: Seconds between due time and publish of the last fired timers (benchmarks).
        self.lateness: deque[float] = deque(maxlen=100_000)
        self.fired = 0
        self.claims = 0
        self.loaded_in_s = 0.0
        #: How the last load started: "snapshot" or "full" (benchmarks, logs).
        self.loaded_from = ""
        self.snapshots_saved = 0

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
    def _stream(self) -> str:
        return f"KV_{self.bucket}"

    @property
    def _prefix(self) -> str:
        return f"$KV.{self.bucket}."

    @property
    def pending(self) -> int:
        return len(self._view.entries)

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
            metrics.TIMERS.labels(_kind_of(entry.value), "cancelled").inc()
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

    # --- following the bucket ------------------------------------------------------

    def _on_message(self, view: _View, msg: Msg) -> None:
        key = msg.subject[len(self._prefix) :]
        headers = msg.headers or {}
        meta = msg.metadata  # parsed from the reply subject on each access: once
        revision = meta.sequence.stream
        view.seq = revision
        if headers.get(KV_OP) in (KV_DEL, KV_PURGE) or _MARKER_REASON in headers or not msg.data:
            self._show_pending(view, view.drop(key))
        else:
            try:
                head = _decode_head(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("timer_record_malformed", key=key, revision=revision)
                self._show_pending(view, view.drop(key))
            else:
                due = head.fire_at.timestamp()
                kind = _INTERNED.get(head.kind, head.kind)
                old = view.put(key, (due, revision, kind))
                if old != kind:
                    self._show_pending(view, old, kind)
                if view.loaded.is_set():
                    heapq.heappush(view.heap, (due, revision, key))
                    if len(view.heap) > 2 * len(view.entries) + 1024:
                        # Re-set timers leave stale heap items behind; drop them in one pass.
                        view.heap = [(d, r, k) for k, (d, r, _) in view.entries.items()]
                        heapq.heapify(view.heap)
                else:
                    view.heap.append((due, revision, key))  # heapified once loaded
        if not view.loaded.is_set() and meta.num_pending == 0:
            heapq.heapify(view.heap)
            view.loaded.set()
        self._wake.set()

    async def _follow(self, stop: asyncio.Event) -> None:
        """Keep a view equal to the bucket; rebuild it after a reconnect (gaps are possible)."""
        while not stop.is_set():
            sub = None
            try:
                view = _View()
                started = time.monotonic()
                from_snapshot = await self._load_snapshot(view)

                async def on_msg(msg: Msg, view: _View = view) -> None:
                    self._on_message(view, msg)

                if from_snapshot:
                    config = ConsumerConfig(
                        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=view.seq + 1
                    )
                else:
                    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
                sub = await self.bus.js.subscribe(
                    self._prefix + ">",
                    stream=self._stream,
                    cb=on_msg,
                    ordered_consumer=True,
                    config=config,
                    inactive_threshold=300,
                )
                info = await sub.consumer_info()
                if info.num_pending == 0 and sub.delivered == 0 and not view.loaded.is_set():
                    heapq.heapify(view.heap)
                    view.loaded.set()
                reconnects = self.bus.nc.stats["reconnects"]
                async with asyncio.timeout(300):
                    await view.loaded.wait()
                self._view = view
                self._show_pending(view, *_KINDS, *view.pending)
                self.loaded_in_s = time.monotonic() - started
                self.loaded_from = "snapshot" if from_snapshot else "full"
                log.info(
                    "timers_loaded",
                    pending=len(view.entries),
                    seconds=round(self.loaded_in_s, 3),
                    source=self.loaded_from,
                )
                self.ready.set()
                self._wake.set()
                while not stop.is_set() and self.bus.nc.stats["reconnects"] == reconnects:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=0.5)
                if not stop.is_set():
                    log.info("timers_reload_after_reconnect")
            except Exception as exc:  # NATS away: retry until it is back
                log.warning("timer_follow_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
            finally:
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    # --- snapshots ---------------------------------------------------------------

    async def _snapshot_store(self) -> ObjectStore:
        if self._snapshots is None:
            name = self.bus.kv_name("timers_snapshot")
            try:
                self._snapshots = await self.bus.js.object_store(name)
            except (BucketNotFoundError, NotFoundError):
                # (nats-py overwrites config.bucket with its bucket argument.)
                self._snapshots = await self.bus.js.create_object_store(
                    bucket=name,
                    config=ObjectStoreConfig(storage=StorageType.FILE, replicas=self.settings.nats_replicas),
                )
        return self._snapshots

    async def _stream_created(self) -> str:
        info = await self.bus.js.stream_info(self._stream)
        return info.created.isoformat() if info.created else ""

    async def _load_snapshot(self, view: _View) -> bool:
        """Fill ``view`` from the saved snapshot; False (view untouched) when there is none usable."""
        if self.settings.timer_snapshot_interval_s <= 0:
            return False
        buffer = io.BytesIO()  # (without one nats-py concatenates the chunks: quadratic)
        try:
            store = await self._snapshot_store()
            await store.get(_SNAPSHOT_OBJECT, writeinto=buffer)
        except (ObjectNotFoundError, NotFoundError):
            return False
        except Exception as exc:  # a broken snapshot must not keep the timers from loading
            log.warning("timers_snapshot_unreadable", error=repr(exc))
            return False
        created = await self._stream_created()
        # A million tuples at once: without this the cyclic GC runs over the growing
        # view again and again (it finds nothing: entries hold no cycles).
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            raw = await asyncio.to_thread(zlib.decompress, buffer.getbuffer())
            snap = _decode_snapshot(raw)
            if snap.stream_created != created:
                log.info("timers_snapshot_stale", reason="bucket re-created")
                return False
            view.fill(snap)
        except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("timers_snapshot_unreadable", error=repr(exc))
            return False
        finally:
            if gc_was_on:
                gc.enable()
        return True

    async def save_snapshot(self) -> bool:
        """Save the current view (when loaded); True when saved."""
        view = self._view
        if not view.loaded.is_set():
            return False
        created = await self._stream_created()
        started = time.monotonic()
        snap = await view.snapshot(created)
        data = await asyncio.to_thread(lambda: zlib.compress(_encode_snapshot(snap), 1))
        store = await self._snapshot_store()
        await store.put(_SNAPSHOT_OBJECT, data)
        self.snapshots_saved += 1
        log.info(
            "timers_snapshot_saved",
            pending=len(snap.keys),
            seq=snap.seq,
            bytes=len(data),
            seconds=round(time.monotonic() - started, 3),
        )
        return True

    async def _snapshot_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.timer_snapshot_interval_s
        if interval <= 0:
            return
        saved_seq = -1
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            view = self._view
            if stop.is_set() or view.seq == saved_seq:
                continue
            if len(view.entries) < self.settings.timer_snapshot_min_pending:
                continue
            try:
                if await self.save_snapshot():
                    saved_seq = view.seq
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("timers_snapshot_failed", error=repr(exc))

    # --- firing ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the bucket and fire due timers until ``stop`` is set."""
        await self.open()
        follow = asyncio.create_task(self._follow(stop), name="timers-follow")
        snapshots = asyncio.create_task(self._snapshot_loop(stop), name="timers-snapshots")
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

    async def _fire(self, view: _View, key: str, entry: Entry, limit: asyncio.Semaphore) -> None:
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

    async def _claim(self, view: _View, key: str, entry: Entry) -> None:
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
                self._show_pending(view, view.drop(key))
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
            self._show_pending(view, view.drop(key))
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

    def _show_pending(self, view: _View, *kinds: str | None) -> None:
        """Set the pending gauge of ``kinds`` from ``view`` when it is the view in use
        (a view still loading after a reconnect does not speak for this replica yet)."""
        if view is not self._view:
            return
        for kind in kinds:
            if kind is not None:
                metrics.TIMERS_PENDING.labels(kind).set(view.pending[kind])

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
