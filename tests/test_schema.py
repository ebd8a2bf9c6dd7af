"""The migrations of all slices produce the schema of DESIGN.md: tables, read views, `messages`."""

from __future__ import annotations

import re

import asyncpg

from libs.db import read_derived
from replyline.commands.migrate import migrate_all
from replyline.services import SERVICES, VIEWS_FILE, migrations_dir

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
#: Each slice's versioned read views (docs/DESIGN.md, "Reading another slice") and their
#: columns: readers outside the slice depend on exactly these, so a change here is a new
#: version, never an edit of v1.
READ_VIEWS = {
    "ingest_v1_inbound": [
        "message_sid", "thread", "from_number", "to_number", "body", "num_media", "media", "received_at",
    ],
    "router_v1_decisions": [
        "id", "message_sid", "thread", "body", "decision", "rule", "status", "language", "sentiment",
        "intent", "decided_at",
    ],
    "router_v1_threads": [
        "thread", "number", "paused", "paused_by", "paused_reason", "opted_out", "consent_keyword",
        "updated_at", "takeover_since", "takeover_until", "takeover_by", "last_human_reply_at",
    ],
    "drafter_v1_drafts": [
        "draft_id", "version", "ref", "thread", "to_number", "body", "source", "status", "in_reply_to",
        "inbound_body", "created_by", "created_at", "decided_at", "decided_by",
    ],
    "drafter_v1_decisions": [
        "id", "draft_id", "version", "ref", "thread", "reviewer", "source", "action", "outcome", "notes",
        "created_at",
    ],
    "drafter_v1_human_replies": [
        "request_id", "thread", "number", "body", "author", "channel", "ref", "status", "error", "created_at",
    ],
    "sender_v1_outbound": [
        "id", "kind", "to_number", "body", "media_urls", "lead_facing", "draft_id", "draft_version",
        "request_id", "in_reply_to", "workflow_enrollment_id", "status", "provider_sid", "provider_status",
        "error_code", "error_message", "failure_reason", "created_at", "updated_at", "sent_at",
    ],
    "sender_v1_delivery_events": ["id", "provider_sid", "status", "error_code", "occurred_at"],
    "scheduler_v1_outcomes": [
        "id", "thread", "outcome", "reason", "decided_by", "details", "source_event", "created_at",
    ],
}  # fmt: skip
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

    assert await columns_of(pool, "messages") == MESSAGES_COLUMNS
    views = {
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'"
        )
    }
    assert views == {"messages", *READ_VIEWS}
    for view, expected in READ_VIEWS.items():
        assert view.split("_v1_")[0] in OWNED_TABLES, view  # named after its slice
        assert await columns_of(pool, view) == expected, view
    # A slice's read view reads only that slice's own tables.
    for view in READ_VIEWS:
        owner = view.split("_v1_")[0]
        used = {
            r["table_name"]
            for r in await pool.fetch(
                "SELECT table_name FROM information_schema.view_table_usage WHERE view_name = $1", view
            )
        }
        assert used and used <= slice_tables()[owner], (view, used)
    # The messages view reads the slices' read views, never their tables.
    used = {
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.view_table_usage WHERE view_name = 'messages'"
        )
    }
    assert used == {"ingest_v1_inbound", "router_v1_decisions", "drafter_v1_drafts",
                    "drafter_v1_human_replies", "sender_v1_outbound"}  # fmt: skip
    slices = await pool.fetch("SELECT slice, max(version) AS v FROM schema_migrations GROUP BY slice")
    assert {r["slice"] for r in slices} == {*SERVICES, "views", "common"}


def slice_tables() -> dict[str, set[str]]:
    """Each slice's tables: the ones its own migrations create."""
    tables: dict[str, set[str]] = {}
    for name in SERVICES:
        folder = migrations_dir(name)
        assert folder is not None
        text = "".join(f.read_text() for f in sorted(folder.glob("*.sql")))
        tables[name] = set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", text, re.IGNORECASE))
    return tables


async def columns_of(pool: asyncpg.Pool, relation: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        relation,
    )
    return [r["column_name"] for r in rows]


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


async def test_messages_view_is_recreated_from_its_one_definition(database_url: str, pool: asyncpg.Pool) -> None:
    """The view is derived: every migrate recreates it from the current file and records its version."""
    versions = await migrate_all(database_url)
    assert versions["views"] == read_derived(VIEWS_FILE)[0]
    # A database left with an older or damaged definition (here: none at all, as a
    # hand-run DROP would leave it) gets the current one back on the next migrate.
    await pool.execute("DROP VIEW messages")
    assert await migrate_all(database_url) == versions
    assert await columns_of(pool, "messages") == MESSAGES_COLUMNS
    recorded = await pool.fetchval("SELECT max(version) FROM schema_migrations WHERE slice = 'views'")
    assert recorded == read_derived(VIEWS_FILE)[0]
