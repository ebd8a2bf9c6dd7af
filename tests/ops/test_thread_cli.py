"""`replyline thread <number>`: one conversation from the stream and the audit log."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from libs.bus import Bus
from libs.db import audit, migrate
from libs.events import DraftCreated, InboundReceived, thread_of
from replyline import cli
from replyline.commands.migrate import migrate_all

LEAD = "+15551234567"
OTHER = "+15557654321"


async def test_thread_merges_stream_and_audit_for_one_number_only(
    bus: Bus,
    pool: asyncpg.Pool,
    nats_url: str,
    database_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await migrate(pool, "ingest", None)  # the shared audit_log
    thread = thread_of(LEAD)
    await bus.publish(
        InboundReceived(
            thread=thread, message_sid="SMcli1", from_number=LEAD, to_number="+15550000000", body="Hi!"
        )
    )
    await bus.publish(
        InboundReceived(
            thread=thread_of(OTHER), message_sid="SMcli2", from_number=OTHER, to_number="+1", body="x"
        )
    )
    await bus.publish(
        DraftCreated(thread=thread, draft_id="d1", version=1, ref="1000", to_number=LEAD, body="Hello")
    )
    await audit(pool, service="drafter", action="draft_created", thread=thread, details={"ref": "1000"})
    for key, value in {"NATS_URL": nats_url, "DATABASE_URL": database_url, "NAMESPACE": namespace}.items():
        monkeypatch.setenv(f"REPLYLINE_{key}", value)
    monkeypatch.delenv("REPLYLINE_CONFIG", raising=False)

    code = await asyncio.to_thread(cli.main, ["thread", LEAD, "--json"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["source"], r["what"]) for r in rows] == [
        ("stream", "inbound.received"),
        ("stream", "draft.created"),
        ("audit", "drafter.draft_created"),
    ]
    assert rows[0]["summary"]["body"] == "Hi!" and rows[1]["summary"]["ref"] == "1000"
    assert rows[2]["summary"] == {"actor": "SYSTEM", "ref": "1000"}

    code = await asyncio.to_thread(cli.main, ["thread", "+15550009999"])
    assert code == 0 and "no history for +15550009999" in capsys.readouterr().out


async def test_thread_shows_takeover_state_and_human_replies_with_delivery(
    bus: Bus,
    pool: asyncpg.Pool,
    nats_url: str,
    database_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await migrate_all(database_url)
    thread = thread_of(LEAD)
    owner = "+13125550100"
    await pool.execute(
        "INSERT INTO thread_controls (thread, number, takeover_since, takeover_until, last_human_reply_at,"
        " takeover_by) VALUES ($1, $2, '2030-06-04 10:00Z', '2030-06-05 10:05Z', '2030-06-04 10:05Z', 'dashboard:ana')",
        thread, LEAD,
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO human_replies (request_id, thread, number, body, author, channel, ref, status, created_at)"
        " VALUES ('h1', $1, $2, 'I can come at 3pm', $3, 'sms', '1006', 'sent', now() - interval '1 hour'),"
        " ('h2', $1, $2, 'On my way', 'dashboard:ana', 'dashboard', '1006', 'failed',"
        "  now() + interval '1 minute')",
        thread, LEAD, owner,
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO outbound_messages (id, dedup_key, kind, to_number, body, lead_facing, request_id, status,"
        " provider_sid, provider_status, error_code) VALUES"
        " (gen_random_uuid(), 'k1', 'human_reply', $1, 'I can come at 3pm', true, 'h1', 'SENT', 'SMh1',"
        "  'delivered', NULL),"
        " (gen_random_uuid(), 'k2', 'human_reply', $1, 'On my way', true, 'h2', 'FAILED_SEND', 'SMh2',"
        "  'undelivered', 30007)",
        LEAD,
    )  # fmt: skip
    await bus.publish(
        InboundReceived(
            thread=thread, message_sid="SMcli3", from_number=LEAD, to_number="+15550000000", body="thanks!"
        )
    )
    for key, value in {"NATS_URL": nats_url, "DATABASE_URL": database_url, "NAMESPACE": namespace}.items():
        monkeypatch.setenv(f"REPLYLINE_{key}", value)
    monkeypatch.delenv("REPLYLINE_CONFIG", raising=False)

    assert await asyncio.to_thread(cli.main, ["thread", LEAD, "--json"]) == 0
    [state, *rows] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert state == {
        "source": "state", "what": "HUMAN_TAKEOVER", "since": "2030-06-04 10:00:00+00:00", "by": "dashboard:ana",
        "channel": "dashboard", "last_human_reply_at": "2030-06-04 10:05:00+00:00",
        "until": "2030-06-05 10:05:00+00:00",
    }  # fmt: skip
    assert [(r["source"], r["what"]) for r in rows] == [
        ("human", "human_reply"),
        ("stream", "inbound.received"),
        ("human", "human_reply"),
    ]
    first, last = rows[0]["summary"], rows[2]["summary"]
    assert first == {
        "body": "I can come at 3pm", "author": owner, "channel": "sms", "ref": "1006", "delivery": "SENT",
        "provider_status": "delivered", "provider_sid": "SMh1",
    }  # fmt: skip
    assert (last["author"], last["delivery"], last["provider_status"], last["error_code"]) == (
        "dashboard:ana", "FAILED_SEND", "undelivered", 30007,
    )  # fmt: skip
    assert last["error_help"]  # the Twilio code explained, as for any send

    assert await asyncio.to_thread(cli.main, ["thread", LEAD]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == (
        "HUMAN_TAKEOVER since 2030-06-04 10:00:00 by dashboard:ana (dashboard); "
        "the AI resumes at 2030-06-05 10:05:00 unless a person replies again"
    )
    assert "human_reply" in lines[0] and "'delivery': 'SENT'" in lines[0]
