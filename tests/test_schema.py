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


async def test_messages_view_shows_human_takeover(database_url: str, pool: asyncpg.Pool) -> None:
    """Lead messages forwarded during a takeover, and a person's replies, in the lifecycle."""
    await migrate_all(database_url)
    lead, thread = "+15551234567", "15551234567"
    await pool.execute(
        "INSERT INTO inbound_messages (message_sid, from_number, to_number, thread, body, raw, event_id,"
        " received_at) VALUES ('SM1', $1, '+15550000000', $2, 'pipe burst', '{}', 'e1',"
        " now() - interval '10 minutes'),"
        " ('SM2', $1, '+15550000000', $2, 'thanks, 3pm is fine', '{}', 'e2', now() + interval '1 minute')",
        lead, thread,
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO routing_decisions (message_sid, thread, stream_seq, from_number, decision, rule, status)"
        " VALUES ('SM1', $2, 1, $1, 'needs_review', 'negative', 'NEEDS_REVIEW'),"
        " ('SM2', $2, 2, $1, 'forward', 'human_takeover', 'HUMAN_TAKEOVER')",
        lead, thread,
    )  # fmt: skip
    # The drafter accepted the owner's SEND; the sender has not picked it up yet.
    await pool.execute(
        "INSERT INTO human_replies (request_id, thread, number, body, author, channel, ref)"
        " VALUES ('human-1', $2, $1, 'Sorry, I can come at 3pm', '+13125550100', 'sms', '1006')",
        lead, thread,
    )  # fmt: skip

    async def lifecycle() -> list[tuple[object, ...]]:
        rows = await pool.fetch(
            "SELECT id, type, status, sender, receiver, body, in_reply_to_id FROM messages"
            " WHERE thread_id = $1 ORDER BY timestamp",
            thread,
        )
        return [tuple(r) for r in rows]

    human = ("human:human-1", "human_reply", "APPROVED_TO_SEND", "+13125550100", lead,
             "Sorry, I can come at 3pm", "inbound:SM1")  # fmt: skip
    assert await lifecycle() == [
        ("inbound:SM1", "inbound", "NEEDS_REVIEW", lead, "+15550000000", "pipe burst", None),
        human,
        ("inbound:SM2", "inbound", "HUMAN_TAKEOVER", lead, "+15550000000", "thanks, 3pm is fine", None),
    ]
    # The sender's outbox row is the same message (once), with its delivery status.
    await pool.execute(
        "INSERT INTO outbound_messages (id, dedup_key, kind, to_number, body, lead_facing, request_id,"
        " status) VALUES (gen_random_uuid(), 'outbound.human:human-1', 'human_reply', $1,"
        " 'Sorry, I can come at 3pm', true, 'human-1', 'SENT')",
        lead,
    )  # fmt: skip
    assert (await lifecycle())[1] == (*human[:2], "SENT", *human[3:])
    await pool.execute("UPDATE outbound_messages SET status = 'FAILED_SEND' WHERE request_id = 'human-1'")
    assert (await lifecycle())[1] == (*human[:2], "FAILED_SEND", *human[3:])
    # Refused by the consent gate: never sent.
    await pool.execute("UPDATE outbound_messages SET status = 'REFUSED' WHERE request_id = 'human-1'")
    await pool.execute("UPDATE human_replies SET status = 'refused' WHERE request_id = 'human-1'")
    assert (await lifecycle())[1] == (*human[:2], "FAILED_SEND", *human[3:])
