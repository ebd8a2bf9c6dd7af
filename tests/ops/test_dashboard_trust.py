"""Issue 11 regressions in the dashboard, on a running ingest with real NATS and Postgres.

- 14: non-ASCII (or undecodable) session cookies, CSRF fields and login values are
  refused (login page, 401/403), never a 500.
- 16: rotating the bootstrap REPLYLINE_API_TOKEN ends the sessions it opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest

from libs.bus import Bus
from libs.events import DraftDecided
from tests.harness import EventCollector
from tests.ingest.running import Ingest
from tests.ingest.test_ingest_api import DRAFTS, FakeDrafterRpc
from tests.ops.conftest import StartIngest
from tests.ops.test_dashboard_http import Browser, hidden


@pytest.fixture
async def rpc(bus: Bus) -> Any:
    fake = await FakeDrafterRpc(bus).start()
    yield fake
    await fake.stop()


async def raw_request(ingest: Ingest, method: str, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request with header bytes exactly as given (clients refuse to send some)."""
    host, port = ingest.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n".encode()
            + headers
            + b"\r\n"
            + body
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def location(rest: bytes) -> str:
    for line in rest.split(b"\r\n"):
        if line.lower().startswith(b"location:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


NON_ASCII = ["tökén-ünïcode", "😸" * 8, "\u202e" + "a" * 40]


async def test_non_ascii_session_cookie_is_sent_to_login_not_500(
    start_ops_ingest: StartIngest,
) -> None:
    ingest = await start_ops_ingest()
    cookies = [f"rl_session={v}".encode() for v in NON_ASCII] + [b"rl_session=\xff\xfe\xfd"]
    for cookie in cookies:
        status, rest = await raw_request(ingest, "GET", "/dashboard", b"Cookie: " + cookie + b"\r\n")
        assert status == 303, (cookie, rest[:300])
        assert location(rest).startswith("/dashboard/login")


async def test_non_ascii_csrf_field_is_refused_not_500(
    start_ops_ingest: StartIngest,
    admin_token: Callable[..., Awaitable[str]],
    collector: EventCollector,
    rpc: FakeDrafterRpc,
) -> None:
    ingest = await start_ops_ingest()
    browser = Browser(ingest)
    await browser.login(await admin_token("owner"))
    assert len(await browser.csrf()) > 10
    for value in NON_ASCII:
        status, where, _ = await browser.request(
            "POST", f"/dashboard/drafts/{DRAFTS[0]['ref']}/approve", data={"csrf": value}
        )
        assert status == 303 and where == "/dashboard?notice=bad_csrf", (value, status)
    # Undecodable bytes in the form field.
    cookie = f"rl_session={browser.cookies['rl_session']}".encode()
    status, rest = await raw_request(
        ingest,
        "POST",
        f"/dashboard/drafts/{DRAFTS[0]['ref']}/approve",
        b"Cookie: " + cookie + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        b"csrf=%FF%FE" + quote("é").encode(),
    )
    assert status in (303, 400), rest[:300]
    await collector.assert_none(DraftDecided, within=0.5)


async def test_non_ascii_login_csrf_and_token_are_refused_not_500(
    start_ops_ingest: StartIngest,
) -> None:
    # A bootstrap token is configured, so the login compares against it directly.
    ingest = await start_ops_ingest(api_token="rl_bootstrap_admin_token_0123456789")
    browser = Browser(ingest)
    for value in NON_ASCII:
        # Non-ASCII CSRF value in the form, against the ASCII double-submit cookie.
        _, _, page = await browser.request("GET", "/dashboard/login")
        assert hidden(page, "csrf")
        status, _, _ = await browser.request(
            "POST", "/dashboard/login", data={"csrf": value, "token": "x", "next": "/dashboard"}
        )
        assert status == 403, value
        # Non-ASCII in both the cookie and the field (raw: clients will not send it).
        raw_cookie = f"rl_login_csrf={value}".encode()
        status, rest = await raw_request(
            ingest,
            "POST",
            "/dashboard/login",
            b"Cookie: " + raw_cookie + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            f"csrf={quote(value)}&token=x".encode(),
        )
        assert status in (401, 403), (value, rest[:300])
        # Non-ASCII token with a valid CSRF pair.
        status, _, _ = await browser.login(value)
        assert status == 401, value
    assert "rl_session" not in browser.cookies


async def test_rotating_the_bootstrap_token_ends_its_sessions(
    start_ops_ingest: StartIngest, rpc: FakeDrafterRpc
) -> None:
    token_a = "rl_bootstrap_token_A_0123456789abcdef"
    token_b = "rl_bootstrap_token_B_0123456789abcdef"
    ingest = await start_ops_ingest(api_token=token_a)
    browser = Browser(ingest)
    status, where, _ = await browser.login(token_a)
    assert status == 303 and where == "/dashboard"
    assert (await browser.request("GET", "/dashboard"))[0] == 200
    cookies = dict(browser.cookies)

    async def with_cookie_on(node: Ingest) -> tuple[int, str]:
        again = Browser(node)
        again.cookies = dict(cookies)
        status, where, _ = await again.request("GET", "/dashboard")
        return status, where

    # A restart with the same token keeps the session (sessions live in Postgres) ...
    await ingest.service.stop()
    same = await start_ops_ingest(api_token=token_a)
    assert (await with_cookie_on(same))[0] == 200
    await same.service.stop()
    # ... but once the token is rotated, the old session is over.
    rotated = await start_ops_ingest(api_token=token_b)
    status, where = await with_cookie_on(rotated)
    assert status == 303 and where.startswith("/dashboard/login")
    # POSTs too (a CSRF token from the old session does not help).
    again = Browser(rotated)
    again.cookies = dict(cookies)
    status, where, _ = await again.request(
        "POST", f"/dashboard/drafts/{DRAFTS[0]['ref']}/approve", data={"csrf": "x"}
    )
    assert status == 303 and where.startswith("/dashboard/login")
    # The new token opens a new session.
    fresh = Browser(rotated)
    assert (await fresh.login(token_b))[0] == 303
    assert (await fresh.request("GET", "/dashboard"))[0] == 200
    await rotated.service.stop()
    # Removing the bootstrap token altogether ends its sessions as well.
    none = await start_ops_ingest(api_token="")
    later = Browser(none)
    later.cookies = dict(fresh.cookies)
    assert (await later.request("GET", "/dashboard"))[0] == 303
