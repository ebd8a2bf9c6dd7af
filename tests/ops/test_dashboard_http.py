"""The dashboard over plain HTTP: login, sessions, CSRF, decisions, pauses, degraded pages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import unquote

import asyncpg
import pytest

from libs.bus import Bus
from libs.db import migrate
from libs.events import ContactPaused, DraftDecided
from replyline.services import migrations_dir
from services.ingest.auth import create_token
from services.ingest.service import QUERIES
from tests.harness import EventCollector
from tests.ingest.running import Ingest
from tests.ingest.test_ingest_api import DRAFTS, FakeDrafterRpc
from tests.ops.conftest import StartIngest


class Browser:
    """A minimal cookie-keeping client (ingest's public URL is https, so cookies are Secure
    and aiohttp's jar would not send them over the test's plain http)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.cookies: dict[str, str] = {}
        self.last_set_cookie: SimpleCookie = SimpleCookie()

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        async with self.ingest.session.request(
            method, self.ingest.url + path, headers=headers, allow_redirects=False, **kwargs
        ) as resp:
            for raw in resp.headers.getall("Set-Cookie", []):
                jar: SimpleCookie = SimpleCookie()
                jar.load(raw)
                for name, morsel in jar.items():
                    self.last_set_cookie[name] = morsel
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return resp.status, resp.headers.get("Location", ""), await resp.text()

    async def login(self, token: str) -> tuple[int, str, str]:
        _, _, page = await self.request("GET", "/dashboard/login")
        csrf = hidden(page, "csrf")
        return await self.request(
            "POST", "/dashboard/login", data={"csrf": csrf, "token": token, "next": "/dashboard"}
        )

    async def csrf(self) -> str:
        status, _, page = await self.request("GET", "/dashboard")
        assert status == 200, status
        return hidden(page, "csrf")


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden {name} field"
    return match.group(1)


@pytest.fixture
async def rpc(bus: Bus) -> Any:
    fake = await FakeDrafterRpc(bus).start()
    yield fake
    await fake.stop()


async def test_login_sessions_and_csrf(
    start_ops_ingest: StartIngest,
    admin_token: Callable[..., Awaitable[str]],
    database_url: str,
    collector: EventCollector,
    rpc: FakeDrafterRpc,
) -> None:
    ingest = await start_ops_ingest()
    browser = Browser(ingest)
    status, location, _ = await browser.request("GET", "/dashboard/threads")
    assert status == 303 and unquote(location) == "/dashboard/login?next=/dashboard/threads"
    # Without a session a decision is refused (sent to the login page), nothing published.
    status, location, _ = await browser.request(
        "POST", f"/dashboard/drafts/{DRAFTS[0]['ref']}/approve", data={}
    )
    assert status == 303 and location.startswith("/dashboard/login")

    conn = await asyncpg.connect(database_url)
    try:
        leads_token = await create_token(conn, QUERIES, "typeform", "leads")
    finally:
        await conn.close()
    assert (await browser.login(leads_token))[0] == 401  # not an admin token
    assert (await browser.login("rl_not_a_token"))[0] == 401
    # A login post without the form's CSRF cookie is refused.
    stranger = Browser(ingest)
    token = await admin_token("owner")
    status, _, _ = await stranger.request("POST", "/dashboard/login", data={"csrf": "x", "token": token})
    assert status == 403

    status, location, _ = await browser.login(token)
    assert status == 303 and location == "/dashboard"
    cookie = browser.last_set_cookie["rl_session"]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert len(browser.cookies["rl_session"]) >= 40

    status, _, page = await browser.request("GET", "/dashboard")
    assert status == 200 and f"#{DRAFTS[0]['ref']}" in page and str(DRAFTS[0]["body"]) in page
    # Forged form (no or wrong CSRF token): refused, no decision.
    for data in ({}, {"csrf": "forged"}):
        status, location, _ = await browser.request(
            "POST", f"/dashboard/drafts/{DRAFTS[0]['ref']}/approve", data=data
        )
        assert status == 303 and location == "/dashboard?notice=bad_csrf"
    await collector.assert_none(DraftDecided, within=0.5)

    # Revoking the admin token ends its dashboard sessions.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(QUERIES.revoke_token, "owner")
    finally:
        await conn.close()
    status, location, _ = await browser.request("GET", "/dashboard")
    assert status == 303 and location.startswith("/dashboard/login")


async def test_edit_reject_pause_and_logout(
    start_ops_ingest: StartIngest,
    admin_token: Callable[..., Awaitable[str]],
    collector: EventCollector,
    rpc: FakeDrafterRpc,
) -> None:
    ingest = await start_ops_ingest()
    browser = Browser(ingest)
    await browser.login(await admin_token("owner"))
    csrf = await browser.csrf()
    first, second = DRAFTS

    status, location, _ = await browser.request(
        "POST",
        f"/dashboard/drafts/{first['draft_id']}/edit",
        data={"csrf": csrf, "ref": first["ref"], "text": "Saturday 10:00 works!"},
    )
    assert status == 303 and location == f"/dashboard?notice=edit&ref={first['ref']}"
    status, location, _ = await browser.request(
        "POST", f"/dashboard/drafts/{first['draft_id']}/edit", data={"csrf": csrf, "text": "  "}
    )
    assert "notice=empty_edit" in location
    await browser.request(
        "POST",
        f"/dashboard/drafts/{second['draft_id']}/reject",
        data={"csrf": csrf, "ref": second["ref"], "notes": "I will call her"},
    )
    status, location, _ = await browser.request(
        "POST", "/dashboard/drafts/ZZZ/approve", data={"csrf": csrf, "ref": "ZZZ"}
    )
    assert "notice=not_found" in location

    edit = (await collector.wait_for(DraftDecided, lambda e: e.action == "edit"))[0]
    assert edit.source == "dashboard" and edit.text == "Saturday 10:00 works!"
    assert edit.draft_id == first["draft_id"] and edit.thread == first["thread"]
    reject = (await collector.wait_for(DraftDecided, lambda e: e.action == "reject"))[0]
    assert reject.notes == "I will call her" and reject.thread == second["thread"]
    assert len(collector.of_type(DraftDecided)) == 2

    status, location, _ = await browser.request(
        "POST", "/dashboard/threads/15551234567/pause", data={"csrf": csrf, "reason": "calling"}
    )
    assert status == 303 and location.startswith("/dashboard/threads/15551234567?notice=pause")
    paused = (await collector.wait_for(ContactPaused))[0]
    assert paused.paused and paused.number == "+15551234567" and paused.actor == "dashboard:owner"
    assert paused.reason == "calling"

    status, location, _ = await browser.request("POST", "/dashboard/logout", data={"csrf": csrf})
    assert status == 303 and location == "/dashboard/login?notice=logged_out"
    assert "rl_session" not in browser.cookies
    status, _, _ = await browser.request("GET", "/dashboard")
    assert status == 303


async def test_pages_degrade_without_the_drafter_and_other_slices(
    start_ops_ingest: StartIngest, admin_token: Callable[..., Awaitable[str]], pool: asyncpg.Pool
) -> None:
    # Only ingest runs: no drafter answers, and the router/sender tables do not exist.
    ingest = await start_ops_ingest(drafter_rpc_timeout_s=0.3)
    browser = Browser(ingest)
    await browser.login(await admin_token("owner"))
    await pool.execute(
        "INSERT INTO audit_log (service, actor, action, thread, details) VALUES "
        "('router', 'SYSTEM', 'routed', '15557654321', '{\"rule\": \"<b>7_negative</b>\"}'), "
        "('drafter', 'SYSTEM', 'owner_prompt', '15550000001', '{}')"
    )
    status, _, page = await browser.request("GET", "/dashboard")
    assert status == 200
    assert "Cannot list drafts: the drafter is not running" in page
    assert "paused threads: not available" in page
    status, _, page = await browser.request("GET", "/dashboard/threads")
    assert status == 200 and "+15557654321" in page
    # The owner's own number is labelled, not given a lead's lifecycle status.
    owner_row = page[page.index("+15550000001") :].split("</tr>")[0]
    assert '<span class="badge">owner</span>' in owner_row and "RECEIVED" not in owner_row
    status, _, page = await browser.request("GET", "/dashboard/threads/15557654321")
    assert status == 200 and "routing decisions: not available" in page
    # Details are escaped, never rendered as markup.
    assert "&lt;b&gt;7_negative&lt;/b&gt;" in page and "<b>7_negative</b>" not in page
    status, _, page = await browser.request("GET", "/dashboard/health")
    assert status == 200 and "router: no heartbeat" in page
    async with ingest.session.get(ingest.url + "/dashboard/login") as resp:
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none'
    assert (await browser.request("GET", "/dashboard/threads/not-a-number"))[0] == 404


def thread_page_form(page: str, action: str) -> tuple[str, dict[str, str]]:
    """The thread page's form for a draft decision: its action URL and hidden fields."""
    match = re.search(rf'<form method="post" action="([^"]*/{action})">(.*?)</form>', page, re.S)
    assert match, f"no {action} form on the thread page"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(2)))
    return match.group(1), fields


async def test_decisions_on_the_thread_page_return_to_it(
    start_ops_ingest: StartIngest,
    admin_token: Callable[..., Awaitable[str]],
    collector: EventCollector,
    rpc: FakeDrafterRpc,
    pool: asyncpg.Pool,
) -> None:
    ingest = await start_ops_ingest()
    await migrate(pool, "drafter", migrations_dir("drafter"))
    draft = DRAFTS[0]
    await pool.execute(
        "INSERT INTO drafts (draft_id, version, ref, thread, to_number, body, source, status)"
        " VALUES ($1, 1, $2, $3, $4, $5, 'llm', 'DRAFT_PENDING_APPROVAL')",
        draft["draft_id"], draft["ref"], draft["thread"], draft["to_number"], draft["body"],
    )  # fmt: skip
    browser = Browser(ingest)
    await browser.login(await admin_token("owner"))
    page_url = f"/dashboard/threads/{draft['thread']}"
    status, _, page = await browser.request("GET", page_url)
    assert status == 200 and 'id="pending-draft"' in page

    expected = {
        "approve": f"Approval of draft #{draft['ref']} sent",
        "edit": f"Edit of draft #{draft['ref']} sent",
        "reject": f"Rejection of draft #{draft['ref']} sent.",
    }
    for action, notice in expected.items():
        url, fields = thread_page_form(page, action)
        data = {**fields, **({"text": "Saturday 10:00 works!"} if action == "edit" else {})}
        status, location, _ = await browser.request("POST", url, data=data)
        assert status == 303 and location == f"{page_url}?notice={action}&ref={draft['ref']}", location
        status, _, shown = await browser.request("GET", location)
        assert status == 200 and "<h1>Thread +15551234567</h1>" in shown
        assert re.search(rf'<div class="notice" role="status">{re.escape(notice)}', shown), shown
        await collector.wait_for(DraftDecided, lambda e, a=action: e.action == a)  # type: ignore[misc]

    # An empty edit and an unknown draft come back to the thread page too.
    url, fields = thread_page_form(page, "edit")
    _, location, _ = await browser.request("POST", url, data={**fields, "text": " "})
    assert location == f"{page_url}?notice=empty_edit&ref={draft['ref']}"
    _, location, _ = await browser.request(
        "POST", "/dashboard/drafts/ZZZ/approve", data={**fields, "ref": "ZZZ"}
    )
    assert location == f"{page_url}?notice=not_found&ref=ZZZ"
    # The return target is built from the thread's digits only: no redirect elsewhere.
    _, location, _ = await browser.request(
        "POST", url, data={**fields, "thread": "//evil.example/x", "text": "hi"}
    )
    assert location.startswith("/dashboard?") or location.startswith("/dashboard/threads/")
    assert "evil" not in location
