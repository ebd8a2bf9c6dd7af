"""A typed workflow enrollment: read from its row, changed in place, saved by name.

The runner, the waits and the conversation handlers all hold an enrollment under
its row lock (``lock`` / ``live_of_thread``), change the fields the moment calls
for and ``save`` it in the same transaction.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from .store import Q

#: Statuses of an enrollment that has not finished.
LIVE = ("active", "waiting", "paused")


class Enrollment(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    workflow_key: str
    workflow_version: int
    thread: str
    status: str
    current_step: str | None
    waiting_for: str | None
    timer_id: str | None
    step_seq: int
    replied: bool
    pause_reason: str | None
    ended_reason: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Enrollment:
        return cls(**{name: row[name] for name in cls.__struct_fields__})

    def request_id(self, seq: int | None = None) -> str:
        """The dedup id of step ``seq`` (default: the current one): events, drafts, http, email."""
        return f"wf:{self.id}:{self.step_seq if seq is None else seq}"

    async def save(self, conn: asyncpg.Connection) -> None:
        await conn.execute(Q.update_enrollment.sql, *Q.update_enrollment.bind(self))


async def lock(conn: asyncpg.Connection, enrollment_id: uuid.UUID | str) -> Enrollment | None:
    row = await conn.fetchrow(Q.lock_enrollment, as_uuid(enrollment_id))
    return None if row is None else Enrollment.from_row(row)


async def live_of_thread(conn: asyncpg.Connection, thread: str) -> list[Enrollment]:
    """The thread's unfinished enrollments, locked, oldest first."""
    return [Enrollment.from_row(row) for row in await conn.fetch(Q.live_enrollments_of_thread, thread)]


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
