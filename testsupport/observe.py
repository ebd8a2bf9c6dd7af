"""Watching the bus from the benchmark process: arrival times, and whole-stream read-backs.

``EventTap`` is a plain core-NATS subscription: JetStream publishes are ordinary
messages on their subjects, so it sees each event the moment it is stored, without
a consumer that could lag or change the system under test. ``read_stream`` reads a
stream back from the first message (for the end-of-run exactly-once checks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.events import Event, decode
from libs.settings import nats_servers

E = TypeVar("E", bound=Event)


async def _quiet(exc: Exception) -> None:
    """Connection errors while a server restarts are expected; nats-py would log each."""


@dataclass
class Seen:
    at: float  # time.monotonic() on arrival
    event: Event
    wall: float  # time.time() on arrival (to compare with event timestamps)
    subject: str
    headers: dict[str, str] = field(default_factory=dict)


class EventTap:
    def __init__(self, nc: NATS, subjects: list[str]) -> None:
        self.nc = nc
        self.subjects = subjects
        self.seen: list[Seen] = []
        self.undecodable: list[bytes] = []
        self._changed = asyncio.Event()
        self._subs: list[object] = []
        self.on_event: Callable[[Seen], None] | None = None

    @classmethod
    async def connect(cls, url: str, subjects: list[str]) -> EventTap:
        nc = await nats.connect(
            nats_servers(url), max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=_quiet
        )
        tap = cls(nc, subjects)
        for subject in subjects:
            sub = await nc.subscribe(subject, cb=tap._on_msg, pending_msgs_limit=1_000_000,
                                     pending_bytes_limit=1 << 30)  # fmt: skip
            tap._subs.append(sub)
        await nc.flush()
        return tap

    async def _on_msg(self, msg: Msg) -> None:
        at, wall = time.monotonic(), time.time()
        try:
            event = decode(msg.data)
        except Exception:
            self.undecodable.append(msg.data)
            return
        seen = Seen(at, event, wall, msg.subject, dict(msg.headers or {}))
        self.seen.append(seen)
        if self.on_event is not None:
            self.on_event(seen)
        self._changed.set()

    def of_type(self, cls: type[Event]) -> list[Seen]:
        return [s for s in self.seen if isinstance(s.event, cls)]

    def events(self, cls: type[E]) -> list[E]:
        return [s.event for s in self.seen if isinstance(s.event, cls)]

    async def wait_count(self, cls: type[Event], count: int, timeout: float) -> bool:
        return await self.wait_until(lambda: len(self.of_type(cls)) >= count, timeout)

    async def wait_until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Re-check on every arrival until ``check()`` or the timeout; False on timeout."""
        deadline = time.monotonic() + timeout
        while not check():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass
        return True

    async def close(self) -> None:
        await self.nc.drain()


async def read_stream(
    url: str, stream: str, subject: str = ">"
) -> list[tuple[int, str, bytes, dict[str, str]]]:
    """Every message of ``stream`` (seq, subject, data, headers), from the first."""
    nc = await nats.connect(nats_servers(url), error_cb=_quiet)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        last = info.state.last_seq
        out: list[tuple[int, str, bytes, dict[str, str]]] = []
        if info.state.messages == 0:
            return out
        filter_subject = None if subject == ">" else subject
        sub = await js.pull_subscribe(
            filter_subject or "", stream=stream,
            # No acks: an acked consumer would stop at max_ack_pending (1000) unacked messages.
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, filter_subject=filter_subject,
                                  ack_policy=AckPolicy.NONE, inactive_threshold=30.0),
        )  # fmt: skip
        while True:
            try:
                msgs = await sub.fetch(500, timeout=2.0)
            except TimeoutError:
                break
            for m in msgs:
                out.append((m.metadata.sequence.stream, m.subject, m.data, dict(m.headers or {})))
            if msgs and msgs[-1].metadata.sequence.stream >= last:
                # the last message may be outside the filter: stop at the stream's end too
                break
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()
