"""Saved copies of a replica's timer view, so that a restart need not read every key.

Restart at a million pending timers: reading every key costs ~25 µs of client
CPU per message (nats-py's parser alone ~10 µs): 25 s for 1,000,000 on a quiet
2-core machine, 115-140 s on a busy one. So each replica saves a snapshot of its
view every ``timer_snapshot_interval_s`` (once ``timer_snapshot_min_pending``
timers are pending) in the object store bucket ``timers_snapshot``: the bucket's
stream sequence it covers plus the columns key, due, revision, kind (msgpack,
zlib). A restart loads that and follows the bucket from the next sequence only.
A timer deleted after the snapshot whose purge marker has already expired is not
seen as deleted: it stays in the view until it comes due, and firing reads the
live record first, so it is then dropped without firing (a re-set one is likewise
seen at its new revision).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import time
import zlib
from collections.abc import Callable

import msgspec
import structlog
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from libs.bus import Bus

from .settings import SchedulerSettings
from .timer_view import Snapshot, View

log = structlog.get_logger("timers")

_encode_snapshot = msgspec.msgpack.Encoder().encode
_decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
_SNAPSHOT_OBJECT = "view"


class Snapshots:
    """The object store ``timers_snapshot``, holding the last saved view of the bucket ``stream``."""

    def __init__(self, bus: Bus, settings: SchedulerSettings, stream: str) -> None:
        self.bus = bus
        self.settings = settings
        self.stream = stream
        self._store: ObjectStore | None = None
        self.saved = 0

    async def _object_store(self) -> ObjectStore:
        if self._store is None:
            name = self.bus.kv_name("timers_snapshot")
            try:
                self._store = await self.bus.js.object_store(name)
            except (BucketNotFoundError, NotFoundError):
                # (nats-py overwrites config.bucket with its bucket argument.)
                self._store = await self.bus.js.create_object_store(
                    bucket=name,
                    config=ObjectStoreConfig(storage=StorageType.FILE, replicas=self.settings.nats_replicas),
                )
        return self._store

    async def _stream_created(self) -> str:
        info = await self.bus.js.stream_info(self.stream)
        return info.created.isoformat() if info.created else ""

    async def load(self, view: View) -> bool:
        """Fill ``view`` from the saved snapshot; False (view untouched) when there is none usable."""
        if self.settings.timer_snapshot_interval_s <= 0:
            return False
        buffer = io.BytesIO()  # (without one nats-py concatenates the chunks: quadratic)
        try:
            store = await self._object_store()
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

    async def save(self, view: View) -> bool:
        """Save ``view`` (when loaded); True when saved."""
        if not view.loaded.is_set():
            return False
        created = await self._stream_created()
        started = time.monotonic()
        snap = await view.snapshot(created)
        data = await asyncio.to_thread(lambda: zlib.compress(_encode_snapshot(snap), 1))
        store = await self._object_store()
        await store.put(_SNAPSHOT_OBJECT, data)
        self.saved += 1
        log.info(
            "timers_snapshot_saved",
            pending=len(snap.keys),
            seq=snap.seq,
            bytes=len(data),
            seconds=round(time.monotonic() - started, 3),
        )
        return True

    async def run(self, current: Callable[[], View], stop: asyncio.Event) -> None:
        """Save the ``current`` view every interval while it has changed and enough is pending."""
        interval = self.settings.timer_snapshot_interval_s
        if interval <= 0:
            return
        saved_seq = -1
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            view = current()
            if stop.is_set() or view.seq == saved_seq:
                continue
            if len(view.entries) < self.settings.timer_snapshot_min_pending:
                continue
            try:
                if await self.save(view):
                    saved_seq = view.seq
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("timers_snapshot_failed", error=repr(exc))
