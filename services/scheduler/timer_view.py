"""Each replica's picture of the timers bucket, and the consumer that keeps it current.

A :class:`View` is an in-memory heap of ``(due, revision, key)`` and a map
key -> (due, revision, kind); the record itself stays in the bucket and is read
when the timer fires (timers.py). A :class:`Follower` fills a view with an
ordered consumer on the bucket (last value per key on start, or only the changes
since a saved snapshot: timer_snapshots.py), then every change, so all replicas
see the same set and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

from libs import metrics
from libs.bus import Bus
from libs.events import TimerKind

log = structlog.get_logger("timers")

_MARKER_REASON = "Nats-Marker-Reason"

Entry = tuple[float, int, str]  # due (epoch s), revision, kind

KINDS: tuple[str, ...] = get_args(TimerKind)
#: One string object per kind, shared by every entry (a million timers, five kinds).
_INTERNED: dict[str, str] = {k: k for k in KINDS}


class _Head(msgspec.Struct):
    """The part of a record the heap needs; decoding skips the rest."""

    fire_at: datetime
    kind: str = ""


_decode_head = msgspec.json.Decoder(_Head).decode


def kind_of(raw: bytes | None) -> str:
    """The kind of a stored timer record ("unknown" when it is not one)."""
    try:
        return _decode_head(raw or b"").kind or "unknown"
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "unknown"


class Snapshot(msgspec.Struct, array_like=True):
    """A view as saved in the object store: columns, one row per pending timer."""

    stream_created: str  # the KV stream's creation time: a re-created bucket voids the snapshot
    seq: int  # last stream sequence of the bucket the view had applied
    kind_names: list[str]
    keys: list[str]
    dues: list[float]
    revisions: list[int]
    kinds: list[int]  # index into kind_names


class View:
    """One consistent picture of the bucket, filled by one ordered consumer."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.loaded = asyncio.Event()
        self.pending: Counter[str] = Counter()
        #: Last stream sequence applied (what a snapshot of this view covers).
        self.seq = 0
        #: Whether the replica fires from this view: only then does it set the pending
        #: gauge (a view still loading after a reconnect does not speak for the replica yet).
        self.in_use = False

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

    def show_pending(self, *kinds: str | None) -> None:
        """Set the pending gauge of ``kinds`` when this is the view in use."""
        if not self.in_use:
            return
        for kind in kinds:
            if kind is not None:
                metrics.TIMERS_PENDING.labels(kind).set(self.pending[kind])

    def apply(self, key: str, revision: int, value: bytes | None) -> None:
        """Take one change of the bucket at stream sequence ``revision`` (``value`` None: removed)."""
        self.seq = revision
        if value is None:
            self.show_pending(self.drop(key))
            return
        try:
            head = _decode_head(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("timer_record_malformed", key=key, revision=revision)
            self.show_pending(self.drop(key))
            return
        due = head.fire_at.timestamp()
        kind = _INTERNED.get(head.kind, head.kind)
        old = self.put(key, (due, revision, kind))
        if old != kind:
            self.show_pending(old, kind)
        if not self.loaded.is_set():
            self.heap.append((due, revision, key))  # heapified once loaded
            return
        heapq.heappush(self.heap, (due, revision, key))
        if len(self.heap) > 2 * len(self.entries) + 1024:
            # Re-set timers leave stale heap items behind; drop them in one pass.
            self.heap = [(d, r, k) for k, (d, r, _) in self.entries.items()]
            heapq.heapify(self.heap)

    def finish_loading(self) -> None:
        heapq.heapify(self.heap)
        self.loaded.set()

    def fill(self, snap: Snapshot) -> None:
        """Start from a snapshot (the heap is heapified once loading ends)."""
        names = [_INTERNED.get(n, n) for n in snap.kind_names]
        kinds = [names[i] for i in snap.kinds]
        self.entries = dict(zip(snap.keys, zip(snap.dues, snap.revisions, kinds, strict=True), strict=True))
        self.heap = list(zip(snap.dues, snap.revisions, snap.keys, strict=True))
        self.pending = Counter(kinds)
        self.seq = snap.seq

    async def snapshot(self, stream_created: str, step: int = 50_000) -> Snapshot:
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
        return Snapshot(
            stream_created=stream_created,
            seq=seq,
            kind_names=names,
            keys=keys,
            dues=dues,
            revisions=revisions,
            kinds=kinds,
        )


#: Fills a fresh view from a saved snapshot; False (view untouched) when there is none usable.
LoadSnapshot = Callable[[View], Awaitable[bool]]
#: Takes a loaded view into use: the view, "snapshot" or "full", seconds the load took.
UseView = Callable[[View, str, float], None]


@dataclass(frozen=True, kw_only=True)
class Follower:
    """Keeps a view equal to the bucket; builds a new one after a reconnect (gaps are possible)."""

    bus: Bus
    stream: str  # the bucket's stream
    prefix: str  # the subject prefix of its keys
    load: LoadSnapshot
    use: UseView
    #: Set after every change, so the firing loop looks at the heap again.
    wake: asyncio.Event

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sub: JetStreamContext.PushSubscription | None = None
            try:
                view = View()
                started = time.monotonic()
                from_snapshot = await self.load(view)
                sub = await self._subscribe(view, from_snapshot)
                reconnects = self.bus.nc.stats["reconnects"]
                async with asyncio.timeout(300):
                    await view.loaded.wait()
                self.use(view, "snapshot" if from_snapshot else "full", time.monotonic() - started)
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

    async def _subscribe(self, view: View, from_snapshot: bool) -> JetStreamContext.PushSubscription:
        """An ordered consumer feeding ``view``: from the snapshot's next sequence, or every key."""

        async def on_msg(msg: Msg) -> None:
            self._on_message(view, msg)

        if from_snapshot:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=view.seq + 1
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        sub = await self.bus.js.subscribe(
            self.prefix + ">",
            stream=self.stream,
            cb=on_msg,
            ordered_consumer=True,
            config=config,
            inactive_threshold=300,
        )
        info = await sub.consumer_info()
        if info.num_pending == 0 and sub.delivered == 0 and not view.loaded.is_set():
            view.finish_loading()
        return sub

    def _on_message(self, view: View, msg: Msg) -> None:
        headers = msg.headers or {}
        meta = msg.metadata  # parsed from the reply subject on each access: once
        removed = headers.get(KV_OP) in (KV_DEL, KV_PURGE) or _MARKER_REASON in headers or not msg.data
        view.apply(msg.subject[len(self.prefix) :], meta.sequence.stream, None if removed else msg.data)
        if not view.loaded.is_set() and meta.num_pending == 0:
            view.finish_loading()
        self.wake.set()
