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
