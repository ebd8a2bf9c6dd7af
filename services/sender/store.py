"""The sender's queries, and the fenced writes a worker makes to the row it leases."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg

from libs.db import NamedQuery, audit, load_queries, unflushed_commit
from libs.events import thread_of
from services.sender.rows import SERVICE, Lease, LeaseLost, OutboxRow

#: The insert's thirteen columns and the fenced writes, which all name the row (``:id``)
#: and the epoch the writer holds (``:epoch``), are written with ``:name`` placeholders:
#: they load as NamedQuery (``libs.db``), bound by name.
Q = load_queries(Path(__file__).parent / "queries.sql")


async def insert_row(pool: asyncpg.Pool, values: dict[str, Any]) -> uuid.UUID | None:
    """Intake's insert (None: the dedup key exists), committed without waiting for the disk.

    Its WAL is flushed by the next write of the same path, the drive's lease, which
    is synchronous: the message costs one disk flush before its lease, not two. A
    Postgres crash before that flush loses the row with the event still unacked, so
    JetStream redelivers it and the row is inserted again (docs/sender.md, "Disk
    flushes before the call").
    """
    async with pool.acquire() as conn, unflushed_commit(conn):
        inserted: uuid.UUID | None = await conn.fetchval(Q.insert_outbox.sql, *Q.insert_outbox.bind(values))
        return inserted


async def load_row(conn: asyncpg.Connection, outbox_id: uuid.UUID) -> OutboxRow:
    record = await conn.fetchrow(Q.get_outbox, outbox_id)
    assert record is not None
    return OutboxRow.from_record(record)


class Leased:
    """One drive's hold on a row: its connection and the lease (fencing token) taken on it."""

    def __init__(self, conn: asyncpg.Connection, lease: Lease) -> None:
        self.conn = conn
        self.lease = lease

    async def write(self, query: NamedQuery, **values: Any) -> None:
        """A fenced update of the leased row: raises LeaseLost if another worker took it over."""
        done = await self.conn.execute(query.sql, *query.bind(self._fenced(values)))
        if done != "UPDATE 1":
            raise LeaseLost(str(self.lease.outbox_id))

    async def mark_sending(self, lease_s: float) -> int:
        """Commit SENDING (lease past the call's end) and return the attempt number."""
        attempts = await self.conn.fetchval(
            Q.mark_sending.sql, *Q.mark_sending.bind(self._fenced({"lease_s": lease_s}))
        )
        if attempts is None:
            raise LeaseLost(str(self.lease.outbox_id))
        return int(attempts)

    def _fenced(self, values: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.lease.outbox_id, "epoch": self.lease.epoch, **values}

    async def reload(self) -> OutboxRow:
        return await load_row(self.conn, self.lease.outbox_id)


async def audit_row(
    conn: asyncpg.Connection, row: OutboxRow, action: str, details: dict[str, Any]
) -> None:
    await audit(
        conn,
        service=SERVICE,
        action=action,
        thread=thread_of(row.to_number),
        details={"outbox_id": str(row.id), "kind": row.kind, **details},
    )
