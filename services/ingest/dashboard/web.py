"""What every dashboard page and action shares: templates, security headers, the
redirect-with-notice, the signed-in (and CSRF-checked) handler wrapper, form fields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import jinja2
import structlog
from aiohttp import web

from libs.db import Queries
from services.ingest.auth import Principal
from services.ingest.dashboard.sessions import COOKIE_PATH, SESSION_COOKIE, Session, SessionStore
from services.ingest.http_common import LOOKUP_ERRORS, SETTINGS_KEY, Unavailable

log = structlog.get_logger("ingest.dashboard")

HERE = Path(__file__).parent
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
STYLE = (HERE / "templates" / "style.css").read_bytes()

#: No scripts, no framing, forms only to ourselves: the pages need nothing else.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Notices shown after a redirect, by code (a URL cannot inject arbitrary text).
NOTICES = {
    "approve": "Approval of draft #{ref} sent; the drafter confirms it and the sender sends it.",
    "reject": "Rejection of draft #{ref} sent.",
    "edit": "Edit of draft #{ref} sent; a new version will appear for approval.",
    "not_found": "Draft #{ref} is no longer pending (already decided or expired).",
    "empty_edit": "An edit needs the new text.",
    "unavailable": "Could not send the decision right now (NATS or the drafter is down); try again.",
    "pause": "Pause of thread {ref} sent.",
    "resume": "Resume of thread {ref} sent.",
    "sent": "Your message to {ref} is on its way from the business number; you have taken over "
    "the thread (the AI stops drafting until you resume it or it stays quiet).",
    "opted_out": "NOT sent: {ref} has opted out (STOP); nothing can be sent to them.",
    "empty_message": "The message needs some text.",
    "logged_out": "Logged out.",
    "bad_csrf": "The form expired; please try again.",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class DashboardDeps:
    pool: asyncpg.Pool
    queries: Queries  # ingest's own queries (inbound messages of a thread)
    sessions: SessionStore


DASHBOARD_KEY = web.AppKey("dashboard", DashboardDeps)


def render(name: str, status: int = 200, **context: Any) -> web.Response:
    html = TEMPLATES.get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def signed_in_page(
    request: web.Request, session: Session, name: str, page: str, **context: Any
) -> web.Response:
    """A signed-in page: the navigation (``page``), the session and any ?notice= banner."""
    return render(f"{name}.html", page=page, session=session, notice=notice_text(request), **context)


def is_secure(request: web.Request) -> bool:
    return request.app[SETTINGS_KEY].public_base_url.startswith("https://") or request.secure


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=is_secure(request),
    )


def redirect(location: str, **params: str) -> web.HTTPSeeOther:
    query = f"?{urlencode(params)}" if params else ""
    return web.HTTPSeeOther(location + query, headers={"Cache-Control": "no-store"})


def safe_next(target: str | None) -> str:
    # Only our own pages: an open redirect after login would help phishing.
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return "/dashboard"


async def current_session(request: web.Request) -> Session | None:
    try:
        return await request.app[DASHBOARD_KEY].sessions.get(request.cookies.get(SESSION_COOKIE))
    except LOOKUP_ERRORS as exc:
        raise Unavailable(f"cannot check the session ({type(exc).__name__})") from exc


def logged_in(handler: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        session = await current_session(request)
        if session is None:
            target = request.path_qs if request.method == "GET" else "/dashboard"
            raise redirect("/dashboard/login", next=target)
        if request.method == "POST":
            form = await request.post()
            if not session.csrf_ok(form_field(form, "csrf")):
                log.warning("dashboard_csrf_rejected", path=request.path, principal=session.principal)
                raise redirect("/dashboard", notice="bad_csrf")
        return await handler(request, session)

    return wrapper


def form_field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def admin_principal(session: Session) -> Principal:
    return Principal(name=session.principal, scope="admin")


def notice_text(request: web.Request) -> str | None:
    template = NOTICES.get(request.query.get("notice", ""))
    return template.format(ref=request.query.get("ref", "")) if template else None
