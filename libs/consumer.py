"""Durable pull consumer loop with typed decisions.

A handler returns ``None`` (ack), ``Retry(delay)`` (nak with delay) or
``Drop(reason)`` (copy to the DLQ and terminate). An unexpected exception is a
``Retry`` with the configured backoff; the last allowed delivery goes to the DLQ
instead. Messages of one thread are handled one after another in this process;
different threads run concurrently up to ``max_in_flight``.

Batches: consecutive messages of one fetch (of different threads) whose handlers
are registered as :class:`Batched` run one after another in ONE transaction (the outbox's batch unit,
libs/event_outbox.py): one commit and one round of publishes for up to
``batch_max`` events, acked after the commit. If any of them fails (an exception or
any decision but ack) the batch is rolled back and its messages are handled again
one by one, so a poison event still goes alone to the DLQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.bus import Bus
from libs.dlq import publish_dlq_copy
from libs.event_outbox import EventOutbox
from libs.events import Event, decode
from libs.handling import Batched, Decision, Delivery, Drop, Handler, Retry, original_seq
from libs.tracing import current_traceparent, new_traceparent, trace_id_of

log = structlog.get_logger("consumer")

# Handlers import their types from here too (one place to learn the consumer from).
__all__ = ["Batched", "Consumer", "Decision", "Delivery", "Drop", "Handler", "Retry", "original_seq"]


class _BatchFailed(Exception):
    """A handler in a batch did not ack: the batch rolls back and goes one by one."""


class Consumer:
    def __init__(
        self,
        bus: Bus,
        durable: str,
        handlers: Mapping[type[Event], Handler],
        *,
        on_settled: Callable[[str, str], None] | None = None,
        outbox: EventOutbox | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one handler")
        self.bus = bus
        self.durable = durable
        self.handlers = dict(handlers)
        self.settings = bus.settings
        self._tags = sorted({str(cls.__struct_config__.tag) for cls in handlers})
        self.outbox = outbox
        self._batched_tags = frozenset(
            str(cls.__struct_config__.tag) for cls, h in handlers.items() if isinstance(h, Batched)
        )
        self.batches = 0
        self.batch_fallbacks = 0
        # A batch holds a pool connection from start to commit, and its handlers may
        # take a second one for a moment (a read before their unit): with as many
        # batches in flight as connections, they would all wait for one more.
        self._batch_slots = asyncio.Semaphore(max(1, self.settings.db_pool_max // 3))
        self._inflight: set[asyncio.Task[None]] = set()
        self._thread_tails: dict[str, asyncio.Future[None]] = {}
        self._on_settled = on_settled
        self.last_fetch_ok: float = 0.0
        self.processed = 0

    @property
    def filter_subjects(self) -> list[str]:
        # replay.<durable>.> carries events re-delivered to this service only.
        own = [self.bus.subject_for(tag, ">") for tag in self._tags]
        return [*own, f"{self.bus.prefix}replay.{self.durable}.>"]

    def config(self) -> ConsumerConfig:
        s = self.settings
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subjects=self.filter_subjects,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=s.ack_wait_s,
            max_deliver=s.max_deliver,
            max_ack_pending=max(1000, s.max_in_flight * 4),
        )

    async def ensure(self) -> None:
        """Create or update the durable; idempotent across replicas.

        JetStream's CREATE without an action is create-or-update, so a release
        that changes the handlers (filter subjects) updates the durable in place.
        """
        await self.bus.js.add_consumer(self.bus.stream, self.config())

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop`` is set, then finish in-flight work within the grace period."""
        await self.ensure()
        sub = await self.bus.js.pull_subscribe_bind(self.durable, self.bus.stream)
        self.last_fetch_ok = time.monotonic()
        s = self.settings
        log.info("consumer_started", durable=self.durable, subjects=self.filter_subjects)
        try:
            while not stop.is_set():
                free = s.max_in_flight - len(self._inflight)
                if free <= 0:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=min(free, s.fetch_batch), timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    self.last_fetch_ok = time.monotonic()
                    continue
                except Exception as exc:  # connection trouble: back off, the client reconnects
                    log.warning("fetch_failed", durable=self.durable, error=repr(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
                    continue
                self.last_fetch_ok = time.monotonic()
                self._dispatch(msgs)
        finally:
            await self._finish_inflight()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            log.info("consumer_stopped", durable=self.durable, processed=self.processed)

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(self._inflight, timeout=self.settings.drain_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            # Unacked messages are redelivered after ack_wait; nothing is lost.
            log.warning("drain_grace_exceeded", durable=self.durable, abandoned=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    def _dispatch(self, msgs: list[Msg]) -> None:
        """Start the fetched messages in order: runs of batchable ones as batches.

        A run holds at most one message per thread: a thread's second message starts
        a new run, so no handler in a batch reads (on another connection) around an
        uncommitted write of the same thread's previous message."""
        limit = self.settings.batch_max if self.outbox is not None else 1
        run: list[Msg] = []
        threads: set[str] = set()
        for msg in msgs:
            if not (limit > 1 and self._batchable(msg)):
                self._start_run(run)
                run, threads = [], set()
                self._start_run([msg])
                continue
            thread = _thread_of(msg)
            if thread in threads or len(run) >= limit:
                self._start_run(run)
                run, threads = [], set()
            run.append(msg)
            threads.add(thread)
        self._start_run(run)

    def _batchable(self, msg: Msg) -> bool:
        tag = ".".join(self.bus.unprefixed(msg.subject).split(".", 2)[:2])
        return tag in self._batched_tags

    def _start_run(self, msgs: list[Msg]) -> None:
        """Start one message, or a batch, after the earlier work of its threads."""
        if not msgs:
            return
        threads = {_thread_of(msg) for msg in msgs}
        previous = [self._thread_tails[t] for t in threads if t in self._thread_tails]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for thread in threads:
            self._thread_tails[thread] = done
        task = asyncio.create_task(self._run(msgs, threads, previous, done))
        self._inflight.add(task)
        task.add_done_callback(self._task_done)

    async def _run(
        self,
        msgs: list[Msg],
        threads: set[str],
        previous: list[asyncio.Future[None]],
        done: asyncio.Future[None],
    ) -> None:
        try:
            for tail in previous:
                await asyncio.shield(tail)
            if len(msgs) == 1:
                await self._handle(msgs[0])
            else:
                async with self._batch_slots:
                    await self._handle_batch(msgs)
        finally:
            done.set_result(None)
            for thread in threads:
                if self._thread_tails.get(thread) is done:
                    del self._thread_tails[thread]

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        assert self.outbox is not None
        deliveries = [self._delivery(msg) for msg in msgs]
        heartbeat = asyncio.create_task(self._heartbeat(*msgs))
        try:
            async with self.outbox.batch():
                for msg, delivery in zip(msgs, deliveries, strict=True):
                    with self._message_context(delivery):
                        decision = await self._decide(msg, delivery)
                    if decision is not None:
                        raise _BatchFailed(f"{delivery.subject}: {decision!r}")
        except Exception as exc:
            # Rolled back: nothing of the batch was written or published.
            self.batch_fallbacks += 1
            log.info("batch_one_by_one", durable=self.durable, size=len(msgs), reason=repr(exc)[:300])
            heartbeat.cancel()
            for msg in msgs:
                await self._handle(msg)
            return
        finally:
            heartbeat.cancel()
        self.batches += 1
        for msg, delivery in zip(msgs, deliveries, strict=True):
            await self._settle(msg, delivery, None)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("consumer_task_crashed", error=repr(task.exception()))

    def _delivery(self, msg: Msg) -> Delivery:
        meta = msg.metadata
        headers = dict(msg.headers or {})
        subject = self.bus.unprefixed(msg.subject)
        return Delivery(
            msg=msg,
            subject=subject,
            stream_seq=meta.sequence.stream,
            num_delivered=meta.num_delivered,
            headers=headers,
            original_seq=original_seq(subject, headers, meta.sequence.stream),
        )

    @contextlib.contextmanager
    def _message_context(self, delivery: Delivery) -> Iterator[None]:
        """The message's trace and log fields, for the time its handler runs."""
        traceparent = delivery.headers.get("traceparent") or new_traceparent()
        token = current_traceparent.set(traceparent)
        structlog.contextvars.bind_contextvars(
            trace_id=trace_id_of(traceparent),
            thread=delivery.subject.rsplit(".", 1)[-1],
            subject=delivery.subject,
            seq=delivery.seq,
        )
        try:
            yield
        finally:
            structlog.contextvars.unbind_contextvars("trace_id", "thread", "subject", "seq")
            current_traceparent.reset(token)

    async def _handle(self, msg: Msg) -> None:
        delivery = self._delivery(msg)
        with self._message_context(delivery):
            heartbeat = asyncio.create_task(self._heartbeat(msg))
            try:
                decision = await self._decide(msg, delivery)
            finally:
                heartbeat.cancel()
            await self._settle(msg, delivery, decision)

    async def _decide(self, msg: Msg, delivery: Delivery) -> Decision:
        try:
            event = decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Drop(f"malformed event: {exc}")
        handler = self.handlers.get(type(event))
        if handler is None:
            return Drop(f"no handler for {event.tag}")
        try:
            return await handler(event, delivery)
        except Exception as exc:
            log.exception("handler_failed", event_type=event.tag, deliveries=delivery.num_delivered)
            return Retry(self._backoff(delivery.num_delivered), reason=repr(exc))

    def _backoff(self, num_delivered: int) -> float:
        steps = self.settings.backoff_s or (1.0,)
        return steps[min(num_delivered - 1, len(steps) - 1)]

    async def _heartbeat(self, *msgs: Msg) -> None:
        interval = max(self.settings.ack_wait_s / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _settle(self, msg: Msg, delivery: Delivery, decision: Decision) -> None:
        outcome = "ack"
        if decision is None:
            await msg.ack()
        elif isinstance(decision, Retry):
            if delivery.num_delivered >= self.settings.max_deliver:
                outcome = "dlq"
                await self.to_dlq(msg, delivery, f"deliveries exhausted: {decision.reason}")
                await msg.term()
            else:
                outcome = "retry"
                log.warning("retry", delay=decision.delay, reason=decision.reason)
                await msg.nak(delay=decision.delay)
        else:
            outcome = "dlq"
            log.warning("dropped", reason=decision.reason)
            await self.to_dlq(msg, delivery, decision.reason)
            await msg.term()
        self.processed += 1
        if self._on_settled is not None:
            self._on_settled(delivery.subject, outcome)

    async def to_dlq(self, msg: Msg, delivery: Delivery, reason: str) -> None:
        await publish_dlq_copy(
            self.bus,
            consumer=self.durable,
            subject=msg.subject,
            seq=delivery.stream_seq,
            data=msg.data,
            headers=dict(delivery.headers),
            reason=reason,
            deliveries=delivery.num_delivered,
        )


def _thread_of(msg: Msg) -> str:
    """The thread a message belongs to: its subject's last token."""
    return msg.subject.rsplit(".", 1)[-1]
