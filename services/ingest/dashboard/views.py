"""The owner dashboard under /dashboard: server-rendered pages, no JavaScript.

Pending drafts (approve / edit / reject), the manual-intervention queue, paused
threads, threads with their status and audit trail, and the system's health.
Decisions and pauses go through the same code as the API (``decide_draft``,
``pause_thread``): ``draft.decided`` with ``source="dashboard"`` and ``contact.paused``
events, audited as HUMAN. Every POST form carries the session's CSRF token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable
from typing import Any, Literal
from urllib.parse import quote

import structlog
from aiohttp import web

from libs import rpc, twilio_errors
from libs.conversation import FORMATS, Filters
from services.ingest.api import (
    DraftNotFound,
    OptedOut,
    decide_draft,
    number_and_thread,
    pause_thread,
    send_human_reply,
)
from services.ingest.auth import secrets_equal
from services.ingest.dashboard import reads
from services.ingest.dashboard.sessions import (
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
)
from services.ingest.dashboard.web import (
    DASHBOARD_KEY,
    STYLE,
    DashboardDeps,
    Handler,
    admin_principal,
    form_field,
    logged_in,
    notice_text,
    redirect,
    render,
    safe_next,
    set_cookie,
    signed_in_page,
)
from services.ingest.export_api import stream_export
from services.ingest.http_common import DEPS_KEY, LOOKUP_ERRORS, SETTINGS_KEY, Unavailable
from services.ingest.system_health import SYSTEM_HEALTH_KEY
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest.dashboard")

# -- login -------------------------------------------------------------------------------


async def login_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    csrf = secrets.token_urlsafe(24)
    response = render(
        "login.html",
        status=status,
        csrf=csrf,
        error=error,
        next=safe_next(request.query.get("next")),
        notice=notice_text(request),
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, csrf, max_age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    submitted = form_field(form, "csrf") or ""
    if not expected or not secrets_equal(expected, submitted):
        return await login_form(request, "The form expired; please try again.", status=403)
    token = (form_field(form, "token") or "").strip()
    try:
        principal = await request.app[DEPS_KEY].tokens.verify(token) if token else None
    except LOOKUP_ERRORS as exc:
        raise Unavailable(f"cannot check the token ({type(exc).__name__})") from exc
    if principal is None or principal.scope != "admin":
        log.warning("dashboard_login_refused", remote=request.remote)
        return await login_form(request, "That is not an active admin token.", status=401)
    sessions = request.app[DASHBOARD_KEY].sessions
    session_id = await sessions.create(principal.name, token)
    log.info("dashboard_login", principal=principal.name)
    response = redirect(safe_next(form_field(form, "next")))
    set_cookie(request, response, SESSION_COOKIE, session_id, max_age=int(sessions.ttl_s))
    response.del_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    raise response


@logged_in
async def logout(request: web.Request, session: Session) -> web.StreamResponse:
    await request.app[DASHBOARD_KEY].sessions.revoke(request.cookies[SESSION_COOKIE])
    response = redirect("/dashboard/login", notice="logged_out")
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    raise response


# -- pages -------------------------------------------------------------------------------


async def _pending_drafts(request: web.Request) -> tuple[list[dict[str, Any]], str | None]:
    """The drafter's pending drafts, or why they cannot be listed (the page says so: the
    drafter's tables are its own, never read here)."""
    try:
        data = await request.app[DEPS_KEY].drafter.call(rpc.DRAFTS_PENDING, rpc.Listing(200))
    except (rpc.RpcUnavailable, rpc.RpcFailed) as exc:
        return [], str(exc)
    return data.drafts, None


async def _manual_queue(request: web.Request) -> tuple[list[dict[str, Any]], str | None]:
    try:
        data = await request.app[DEPS_KEY].drafter.call(rpc.MANUAL_QUEUE, rpc.Listing(200))
    except (rpc.RpcUnavailable, rpc.RpcFailed) as exc:
        return [], str(exc)
    return data.items, None


@logged_in
async def overview(request: web.Request, session: Session) -> web.Response:
    deps = request.app[DASHBOARD_KEY]
    drafts, drafts_error = await _pending_drafts(request)
    queue, queue_error = await _manual_queue(request)
    health = await request.app[SYSTEM_HEALTH_KEY].report()
    return signed_in_page(
        request,
        session,
        "overview",
        "overview",
        drafts=drafts,
        drafts_error=drafts_error,
        queue=queue,
        queue_error=queue_error,
        paused=await reads.paused_threads(deps.pool),
        health=health,
    )


@logged_in
async def threads(request: web.Request, session: Session) -> web.Response:
    rows, notes = await reads.recent_threads(request.app[DASHBOARD_KEY].pool)
    owners = {n.lstrip("+") for n in request.app[SETTINGS_KEY].owner_numbers}
    return signed_in_page(
        request,
        session,
        "threads",
        "threads",
        threads=rows,
        notes=notes,
        owners=owners,
    )


def _path_thread(request: web.Request) -> tuple[str, str]:
    """(number, thread) of the ``{thread}`` in the URL; 404 when it is not a phone number."""
    try:
        return number_and_thread(request.match_info["thread"])
    except PayloadError:
        raise web.HTTPNotFound(text="not a phone number") from None


@logged_in
async def thread(request: web.Request, session: Session) -> web.Response:
    number, thread_id = _path_thread(request)
    deps = request.app[DASHBOARD_KEY]
    detail = await reads.thread_detail(deps.pool, thread_id, deps.queries.list_inbound_for_thread)
    return signed_in_page(
        request,
        session,
        "thread",
        "threads",
        number=number,
        detail=detail,
        as_json=lambda value: json.dumps(value, default=str, ensure_ascii=False),
        explain_error=twilio_errors.explain,
    )


@logged_in
async def thread_export(request: web.Request, session: Session) -> web.StreamResponse:
    """The thread page's download link: the same export as GET /api/export, one thread."""
    _, thread_id = _path_thread(request)
    fmt = request.query.get("format", "csv")
    if fmt not in FORMATS:
        raise web.HTTPBadRequest(text="format must be csv or jsonl")
    pool = request.app[DASHBOARD_KEY].pool
    return await stream_export(request, pool, Filters(thread=thread_id), fmt, who=session.principal)


@logged_in
async def health(request: web.Request, session: Session) -> web.Response:
    report = await request.app[SYSTEM_HEALTH_KEY].report()
    return render("health.html", page="health", session=session, notice=None, health=report)


async def style(request: web.Request) -> web.Response:
    return web.Response(body=STYLE, content_type="text/css", headers={"Cache-Control": "max-age=3600"})


# -- actions -----------------------------------------------------------------------------


def decide(action: Literal["approve", "reject", "edit"]) -> Handler:
    @logged_in
    async def handler(request: web.Request, session: Session) -> web.StreamResponse:
        key = request.match_info["draft"]
        form = await request.post()
        ref = form_field(form, "ref") or key
        back = _decision_return(form)
        decision = decide_draft(
            request,
            admin_principal(session),
            action=action,
            key=key,
            text=form_field(form, "text"),
            notes=(form_field(form, "notes") or "")[:1600],
            given_thread=form_field(form, "thread") or None,
            source="dashboard",
        )
        await _or_notice(decision, back, ref, {DraftNotFound: "not_found", PayloadError: "empty_edit"})
        raise redirect(back, notice=action, ref=ref)

    return handler


async def _or_notice(
    action: Awaitable[object], back: str, ref: str, notices: dict[type[Exception], str]
) -> None:
    """Run ``action``; a refusal it raises (``notices``, by exception type, checked in
    order) or ``Unavailable`` redirects to ``back`` with that notice instead."""
    refusals: tuple[type[Exception], ...] = (*notices, Unavailable)
    try:
        await action
    except refusals as exc:
        notice = next((n for cls, n in notices.items() if isinstance(exc, cls)), "unavailable")
        raise redirect(back, notice=notice, ref=ref) from None


def _decision_return(form: Any) -> str:
    """Where a decision returns: the thread page it was made on (``back=thread``), else the inbox.

    Built from the thread's digits only, never from a URL in the form (no open redirect).
    """
    if form_field(form, "back") == "thread":
        try:
            _, thread_id = number_and_thread(form_field(form, "thread") or "")
        except PayloadError:
            return "/dashboard"
        return f"/dashboard/threads/{quote(thread_id)}"
    return "/dashboard"


def pause(paused: bool) -> Handler:
    @logged_in
    async def handler(request: web.Request, session: Session) -> web.StreamResponse:
        raw = request.match_info["thread"]
        form = await request.post()
        try:
            event = await pause_thread(
                request,
                admin_principal(session),
                number=raw,
                paused=paused,
                reason=(form_field(form, "reason") or "")[:500],
                source="dashboard",
            )
        except PayloadError:
            raise web.HTTPNotFound(text="not a phone number") from None
        except Unavailable:
            raise redirect("/dashboard", notice="unavailable", ref=raw) from None
        raise redirect(
            f"/dashboard/threads/{quote(event.thread)}",
            notice="pause" if paused else "resume",
            ref=event.number,
        )

    return handler


@logged_in
async def send_message(request: web.Request, session: Session) -> web.StreamResponse:
    """The compose box: the same send path as SEND by SMS and the API (api.send_human_reply)."""
    form = await request.post()
    number, thread_id = _path_thread(request)
    back = f"/dashboard/threads/{quote(thread_id)}"
    reply = send_human_reply(
        request,
        admin_principal(session),
        number=number,
        text=form_field(form, "text") or "",
        source="dashboard",
    )
    await _or_notice(reply, back, number, {OptedOut: "opted_out", PayloadError: "empty_message"})
    raise redirect(back, notice="sent", ref=number)


def add_dashboard_routes(app: web.Application, deps: DashboardDeps) -> None:
    app[DASHBOARD_KEY] = deps
    app.router.add_get("/dashboard", overview)
    app.router.add_get("/dashboard/login", login_form)
    app.router.add_post("/dashboard/login", login)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_get("/dashboard/threads", threads)
    app.router.add_get("/dashboard/threads/{thread}", thread)
    app.router.add_get("/dashboard/threads/{thread}/export", thread_export)
    app.router.add_get("/dashboard/health", health)
    app.router.add_get("/dashboard/style.css", style)
    for action in ("approve", "reject", "edit"):
        app.router.add_post(f"/dashboard/drafts/{{draft}}/{action}", decide(action))
    app.router.add_post("/dashboard/threads/{thread}/pause", pause(True))
    app.router.add_post("/dashboard/threads/{thread}/resume", pause(False))
    app.router.add_post("/dashboard/threads/{thread}/messages", send_message)
