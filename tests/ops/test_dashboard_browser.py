"""The dashboard in a real headless Chromium: log in, see a pending draft, approve it."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import DraftApproved, DraftCreated, DraftDecided, InboundRouted, thread_of
from tests.harness import EventCollector, eventually
from tests.ops.browser import chromium_page, find_chromium
from tests.ops.conftest import BUSINESS, StartFleet, StartIngest

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed: apt-get install -y chromium chromium-driver "
    "(bin/test does this when it runs as root with apt)",
)

LEAD = "+15551234567"


def routed(sid: str, body: str) -> InboundRouted:
    return InboundRouted(
        thread=thread_of(LEAD),
        message_sid=sid,
        from_number=LEAD,
        to_number=BUSINESS,
        body=body,
        decision="draft",
        rule="9_draft",
        status="DRAFT_PENDING_APPROVAL",
        language="en",
        language_confidence=0.9,
        intent="pricing",
        intent_score=0.8,
    )


def screenshot_dir(tmp_path: Path) -> Path:
    """REPLYLINE_TEST_SCREENSHOTS keeps the screenshots for a look; by default they go with tmp_path."""
    folder = Path(os.environ.get("REPLYLINE_TEST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_owner_logs_in_and_approves_a_draft_in_chromium(
    start_ops_ingest: StartIngest,
    start_fleet: StartFleet,
    admin_token: Callable[..., Awaitable[str]],
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    ingest = await start_ops_ingest()
    await start_fleet("drafter")
    token = await admin_token("owner-laptop")
    await bus.publish(routed("SMbrowser0001", "How much is drain cleaning?"))
    created = (await collector.wait_for(DraftCreated, timeout=15))[0]
    shots = screenshot_dir(tmp_path)

    async with chromium_page(CHROMIUM) as page:
        await page.goto(ingest.url + "/dashboard")
        assert page.url.startswith(ingest.url + "/dashboard/login")
        await page.fill("#token", "rl_wrong")
        async with page.expect_navigation():
            await page.click("#sign-in")
        assert "not an active admin token" in await page.inner_text(".error")

        await page.fill("#token", token)
        async with page.expect_navigation():
            await page.click("#sign-in")
        assert page.url == ingest.url + "/dashboard"
        card = f"#draft-{created.ref}"
        assert await page.locator(card).count() == 1, await page.inner_text("body")
        assert created.body in await page.inner_text(card)
        assert "How much is drain cleaning?" in await page.inner_text(card)
        await page.screenshot(path=shots / "dashboard.png", full_page=True)

        async with page.expect_navigation():
            await page.click(f"{card} button[name=approve]")
        assert f"Approval of draft #{created.ref} sent" in await page.inner_text(".notice")

        decided = (await collector.wait_for(DraftDecided, lambda e: e.source == "dashboard"))[0]
        assert decided.action == "approve" and decided.draft_id == created.draft_id
        assert decided.thread == thread_of(LEAD) and decided.reviewer == "dashboard:owner-laptop"
        approved = (await collector.wait_for(DraftApproved, lambda e: e.draft_id == created.draft_id))[0]
        assert approved.body == created.body and approved.to_number == LEAD

        async def draft_gone() -> bool:
            await page.goto(ingest.url + "/dashboard")
            return await page.locator(card).count() == 0

        await eventually(draft_gone, timeout=10, interval=0.3)

        # The thread page shows the human decision in the audit trail.
        await page.goto(ingest.url + f"/dashboard/threads/{thread_of(LEAD)}")
        audit = await page.inner_text("#audit")
        assert "draft.decided" in audit and "HUMAN" in audit
        await page.screenshot(path=shots / "thread.png", full_page=True)

        async with page.expect_navigation():
            await page.click("nav a[href='/dashboard/health']")
        services = await page.inner_text("#services")
        assert "drafter" in services and "ingest" in services and "router" in services
        await page.screenshot(path=shots / "health.png", full_page=True)
    row = await pool.fetchrow(
        "SELECT actor, details FROM audit_log WHERE service = 'ingest' AND action = 'draft.decided'"
    )
    assert row["actor"] == "HUMAN" and row["details"]["token"] == "owner-laptop"
