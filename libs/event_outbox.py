"""One rule for "write the rows, publish the events": the transactional outbox.

A handler opens a :class:`Unit` (``async with outbox.unit() as u``): a transaction on
``u.conn`` in which ``u.emit(event)`` buffers the events the writes mean. Just before
the commit the buffered events become rows of the slice's ``<slice>_event_outbox``
table, in the same transaction, so the rows and their events commit together or not
at all. After the commit the unit publishes them (``Nats-Msg-Id`` = the event's
dedup id, so JetStream's duplicate window makes any second publish a no-op) and the
rows are deleted in batches. An event is therefore never on the bus before the rows
it describes, and never lost: if the process dies between the commit and the
publish, or NATS is away, the sweeper (:meth:`EventOutbox.run`) publishes what is
left, oldest first.

Events of one unit are published in the order they were emitted. An event that
describes no row of this slice may be published with ``Bus.publish`` directly.

Batches: the consumer may run several handlers in one transaction
(:meth:`EventOutbox.batch`, libs/consumer.py). Inside a batch, ``unit()`` joins
the batch's unit instead of opening its own: one commit, one outbox INSERT and one
round of publishes for the whole batch. Only handlers registered with
``consumer.batched`` run so: their unit is their last step (nothing after it may
assume the commit happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import asyncpg
import structlog
from nats.js.api import PubAck

from libs.bus import Bus
from libs.events import Event, encode
from libs.tracing import outgoing_traceparent

log = structlog.get_logger("event_outbox")

_SLICE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The unit of the batch the current task runs in (set by EventOutbox.batch).
_joined: ContextVar[Unit | None] = ContextVar("replyline_outbox_batch", default=None)


class NotPublished(Exception):
    """The unit committed but its events could not be published yet (the sweeper will).

    Raised only by units opened with ``must_publish=True`` (ingest: a webhook is not
    answered 200 before its event is on the bus)."""


@dataclass(frozen=True, slots=True)
class _Row:
    msg_id: str
    subject: str
    data: bytes
    traceparent: str | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> _Row:
        """An outbox table row, read back for publishing."""
        return cls(record["msg_id"], record["subject"], bytes(record["data"]), record["traceparent"])


@dataclass(slots=True)
class Unit:
    """One transaction and the events it emits; see the module docstring."""

    conn: asyncpg.Connection
    #: The bus's subject prefix (its namespace).
    prefix: str
    _rows: list[_Row] = field(default_factory=list)
    _ids: list[int] = field(default_factory=list)
    #: The stream acks, in emit order, once published (empty if publishing failed).
    acks: list[PubAck] = field(default_factory=list)

    def emit(self, event: Event, *, msg_id: str | None = None) -> None:
        """Publish ``event`` once this unit's transaction has committed."""
        subject = self.prefix + event.subject()
        self._rows.append(_Row(msg_id or event.dedup_id(), subject, encode(event), outgoing_traceparent()))

    @property
    def emitted(self) -> int:
        return len(self._rows)


class EventOutbox:
    """A slice's outbox: units for handlers, the publisher, and the sweeper."""

    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        slice_name: str,
        *,
        publish_timeout_s: float = 5.0,
        sweep_every_s: float = 1.0,
        sweep_after_s: float = 2.0,
        sweep_batch: int = 500,
        delete_every_s: float = 0.05,
    ) -> None:
        if not _SLICE.match(slice_name):
            raise ValueError(f"bad slice name {slice_name!r}")
        self.bus = bus
        self.pool = pool
        self.slice = slice_name
        self.table = f"{slice_name}_event_outbox"
        self.publish_timeout_s = publish_timeout_s
        self.sweep_every_s = sweep_every_s
        self.sweep_after_s = sweep_after_s
        self.sweep_batch = sweep_batch
        self.delete_every_s = delete_every_s
        self._sql_insert = (
            f"INSERT INTO {self.table} (msg_id, subject, data, traceparent) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) RETURNING id"
        )
        self._sql_delete = f"DELETE FROM {self.table} WHERE id = ANY($1::bigint[])"
        self._sql_leftovers = (
            f"SELECT id, msg_id, subject, data, traceparent FROM {self.table} "
            "WHERE created_at < clock_timestamp() - make_interval(secs => $1) ORDER BY id LIMIT $2"
        )
        self._sql_lock = "SELECT pg_try_advisory_xact_lock(hashtext($1))"
        self._sql_pending_of = (
            f"SELECT id, msg_id, subject, data, traceparent FROM {self.table} "
            "WHERE msg_id = ANY($1::text[]) ORDER BY id"
        )
        self._done: list[int] = []
        self._done_added = asyncio.Event()
        self._running = False
        self.published = 0
        self.swept = 0

    # --- handlers ------------------------------------------------------------

    @asynccontextmanager
    async def unit(
        self, conn: asyncpg.Connection | None = None, *, must_publish: bool = False
    ) -> AsyncIterator[Unit]:
        """A transaction whose emitted events are published after it commits.

        ``conn``: a connection the caller already holds (not in a transaction);
        otherwise one is taken from the pool for the unit. Inside :meth:`batch` the
        batch's unit is yielded (and ``conn`` is not used).
        """
        joined = _joined.get()
        if joined is not None:
            if must_publish:
                raise RuntimeError("a unit that must publish cannot join a batch")
            yield joined
            return
        async with contextlib.AsyncExitStack() as stack:
            if conn is not None and conn.is_in_transaction():
                raise RuntimeError("a unit owns its transaction: pass a connection outside one")
            held: asyncpg.Connection = conn or await stack.enter_async_context(self.pool.acquire())
            unit = Unit(held, self.bus.prefix)
            async with held.transaction():
                yield unit
                await self._write(unit)
        if unit._rows:
            await self._publish_unit(unit, must_publish)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Unit]:
        """One unit that every ``unit()`` opened in this task joins, until it exits."""
        if _joined.get() is not None:
            raise RuntimeError("batches do not nest")
        async with self.unit() as u:
            token = _joined.set(u)
            try:
                yield u
            finally:
                _joined.reset(token)

    async def _write(self, unit: Unit) -> None:
        if not unit._rows:
            return
        rows = unit._rows
        ids = await unit.conn.fetch(
            self._sql_insert,
            [r.msg_id for r in rows],
            [r.subject for r in rows],
            [r.data for r in rows],
            [r.traceparent for r in rows],
        )
        unit._ids = [r["id"] for r in ids]

    async def _publish_unit(self, unit: Unit, must_publish: bool) -> None:
        try:
            unit.acks = await self._publish(unit._rows)
        except Exception as exc:
            log.warning("outbox_publish_deferred", table=self.table, events=len(unit._rows), error=repr(exc))
            if must_publish:
                raise NotPublished(repr(exc)) from exc
            return
        await self._forget(unit._ids)

    # --- publishing ------------------------------------------------------------

    async def _publish(self, rows: Sequence[_Row]) -> list[PubAck]:
        """Publish in order: the first alone (it may set up the reply subscription),
        the rest pipelined (nats-py writes them in call order on one connection)."""
        if not self.bus.nc.is_connected:
            # Fail fast: nats-py would buffer the message until the publish timeout (and
            # flush it on reconnect); the rows stay and the sweeper publishes them later.
            raise ConnectionError("NATS is not connected")
        first = await self._publish_one(rows[0])
        rest = await asyncio.gather(*(self._publish_one(r) for r in rows[1:]))
        self.published += len(rows)
        return [first, *rest]

    async def _publish_one(self, row: _Row) -> PubAck:
        headers = {"Nats-Msg-Id": row.msg_id}
        if row.traceparent:
            headers["traceparent"] = row.traceparent
        timeout = self.publish_timeout_s
        return await self.bus.js.publish(row.subject, row.data, headers=headers, timeout=timeout)

    async def _forget(self, ids: list[int]) -> None:
        """Delete published rows: in batches by the running sweeper, else at once."""
        if not ids:
            return
        if self._running:
            self._done.extend(ids)
            self._done_added.set()
            return
        await self._delete(ids)

    async def _delete(self, ids: list[int]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Losing this delete in a crash only means publishing the rows again,
            # which the duplicate window drops: no need to wait for the disk.
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute(self._sql_delete, ids)

    # --- the sweeper -------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Delete published rows in batches and publish leftovers until ``stop``.

        Deletes wait ``delete_every_s`` to gather the ids of many units into one
        statement; the sweep for leftovers runs every ``sweep_every_s`` only (it takes
        a lock and scans: not something to do after every unit)."""
        self._running = True
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.sweep_every_s
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done_added.wait(), max(0.0, next_sweep - loop.time()))
                    await asyncio.sleep(self.delete_every_s)
                await self._guarded(self._flush_done())
                if loop.time() >= next_sweep:
                    await self._guarded(self.sweep())
                    next_sweep = loop.time() + self.sweep_every_s
        finally:
            self._running = False
            await self._flush_done()

    async def _guarded(self, work: Awaitable[object]) -> None:
        try:
            await work
        except Exception as exc:
            # Postgres restarting or NATS away (each with its own exception tree): the
            # rows stay, the next round retries. The service must not stop for it.
            log.warning("outbox_sweep_failed", table=self.table, error=repr(exc))

    async def _flush_done(self) -> None:
        self._done_added.clear()
        if not self._done:
            return
        ids, self._done = self._done, []
        try:
            await self._delete(ids)
        except BaseException:
            self._done.extend(ids)
            raise

    async def sweep(self, *, older_than_s: float | None = None) -> int:
        """Publish rows older than ``older_than_s`` (default: the sweep age) and delete
        them; one replica at a time. Returns how many were published."""
        age = self.sweep_after_s if older_than_s is None else older_than_s
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval(self._sql_lock, self.table):
                    return total  # another replica is sweeping this slice
                found = await conn.fetch(self._sql_leftovers, age, self.sweep_batch)
                if not found:
                    return total
                rows = [_Row.of(r) for r in found]
                await self._publish(rows)
                await conn.execute(self._sql_delete, [r["id"] for r in found])
            total += len(found)
            self.swept += len(found)
            log.info("outbox_swept", table=self.table, events=len(found))
            if len(found) < self.sweep_batch:
                return total

    async def publish_pending(self, msg_ids: Sequence[str]) -> int:
        """Publish now the still-unpublished rows with these ``msg_id``s, oldest first.

        For a caller that must not answer before events an earlier attempt committed are
        on the bus (ingest: Twilio's retry of a webhook whose first attempt committed but
        could not publish). Raises if publishing fails; the rows then stay for the
        sweeper. Returns how many rows were published (0: already out)."""
        if not msg_ids:
            return 0
        found = await self.pool.fetch(self._sql_pending_of, list(msg_ids))
        if not found:
            return 0
        rows = [_Row.of(r) for r in found]
        await self._publish(rows)
        await self._forget([r["id"] for r in found])
        return len(found)

    async def pending(self) -> int:
        """Rows not yet published and deleted (for health and tests)."""
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self.table}"))
