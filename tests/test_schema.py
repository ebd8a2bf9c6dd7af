"""The migrations of all slices produce the schema of DESIGN.md, plus the `messages` view."""

from __future__ import annotations

import asyncpg

from replyline.commands.migrate import migrate_all
from replyline.services import SERVICES

OWNED_TABLES = {
    "ingest": {"inbound_messages", "api_tokens"},
    "router": {"routing_decisions", "thread_controls"},
    "drafter": {"drafts", "approvals", "ai_traces"},
    "sender": {"outbound_messages", "delivery_events", "consent"},
    "scheduler": {
        "contacts",
        "workflow_definitions",
        "workflow_enrollments",
        "workflow_executions",
        "conversation_outcomes",
    },
}
MESSAGES_COLUMNS = [
    "id", "thread_id", "in_reply_to_id", "sender", "receiver", "body", "media",
    "status", "type", "timestamp", "draft_version",
]  # fmt: skip


async def test_all_migrations_produce_the_designed_schema(database_url: str, pool: asyncpg.Pool) -> None:
    versions = await migrate_all(database_url)
    assert set(versions) == {*SERVICES, "views"} and all(v >= 1 for v in versions.values())
    assert await migrate_all(database_url) == versions  # idempotent

    tables = {
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    }
    for service, owned in OWNED_TABLES.items():
        assert owned <= tables, f"{service} is missing {owned - tables}"
    assert {"audit_log", "schema_migrations"} <= tables

    columns = [
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'messages' ORDER BY ordinal_position"
        )
    ]
    assert columns == MESSAGES_COLUMNS
    slices = await pool.fetch("SELECT slice, max(version) AS v FROM schema_migrations GROUP BY slice")
    assert {r["slice"] for r in slices} == {*SERVICES, "views", "common"}


async def test_messages_view_follows_the_lifecycle(database_url: str, pool: asyncpg.Pool) -> None:
    await migrate_all(database_url)
    await pool.execute(
        "INSERT INTO inbound_messages (message_sid, from_number, to_number, thread, body, raw, event_id)"
        " VALUES ('SM1', '+15551234567', '+15550000000', '15551234567', 'price?', '{}', 'e1')"
    )
    [row] = await pool.fetch("SELECT status, type, thread_id FROM messages")
    assert tuple(row) == ("RECEIVED", "inbound", "15551234567")
    await pool.execute(
        "INSERT INTO routing_decisions (message_sid, thread, stream_seq, from_number, decision, rule, status)"
        " VALUES ('SM1', '15551234567', 1, '+15551234567', 'needs_review', 'media', 'NEEDS_REVIEW')"
    )
    assert await pool.fetchval("SELECT status FROM messages") == "NEEDS_REVIEW"
    try:
        await pool.execute("UPDATE messages SET body = 'x'")
    except asyncpg.PostgresError:
        pass
    else:
        raise AssertionError("the messages view must be read-only")
