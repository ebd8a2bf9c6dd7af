"""The owner/admin HTTP API under /api (bearer token with the ``admin`` scope).

Reads (pending drafts, manual-intervention queue) are answered by the drafter's
request/reply endpoints (libs/rpc.py); decisions and pauses are events. The API
answers 202: the drafter checks a decision (draft known, still pending) when it
consumes it, exactly as for an SMS decision.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import structlog
from aiohttp import web

from libs import rpc
from libs.events import ContactPaused, DecisionAction, DecisionSource, DraftDecided, Event, thread_of
from services.ingest.auth import Principal
from services.ingest.http_common import DEPS_KEY, Unavailable, authenticate, json_error
from services.ingest.leads import decode_json_object
from services.ingest.twilio_payload import PayloadError

log = structlog.get_logger("ingest")

_NUMBER = re.compile(r"^\+?([1-9]\d{5,14})$")
_MAX_LIMIT = 500

Handler = Callable[[web.Request], Awaitable[web.Response]]


class DraftNotFound(Exception):
    """No pending draft has that id or ref (the API answers 404)."""


def number_and_thread(raw: str) -> tuple[str, str]:
    """``+15551234567`` or ``15551234567`` (a thread token) -> (E.164, thread)."""
    match = _NUMBER.match(raw.strip())
    if not match:
        raise PayloadError(f"{raw!r} is not an E.164 number or thread (e.g. +15551234567)")
    digits = match.group(1)
    return f"+{digits}", digits


async def json_body(request: web.Request) -> dict[str, Any]:
    """An optional JSON object body ({} when empty)."""
    raw = await request.read()
    return decode_json_object(raw) if raw.strip() else {}


def _str_field(data: dict[str, Any], key: str, *, max_len: int = 1600) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{key} must be a string")
    if len(value) > max_len:
        raise PayloadError(f"{key} is longer than {max_len} characters")
    return value


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise PayloadError(f"limit must be a number from 1 to {_MAX_LIMIT}")
    return int(raw)


async def ask(client: rpc.RpcClient, endpoint: rpc.Endpoint[rpc.Req, rpc.Resp], payload: rpc.Req) -> rpc.Resp:
    """One request to another service: 503 when nobody answers, 502 when it failed.

    A refusal the endpoint declares (``rpc.Refused``: not found, invalid) is the caller's.
    """
    try:
        return await client.call(endpoint, payload)
    except rpc.RpcUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    except rpc.RpcFailed as exc:
        raise web.HTTPBadGateway(
            text=json.dumps({"error": f"{endpoint.service}: {exc}"}), content_type="application/json"
        ) from exc


async def list_pending(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    data = await ask(request.app[DEPS_KEY].drafter, rpc.DRAFTS_PENDING, rpc.Listing(_limit(request)))
    return web.json_response({"drafts": data.drafts})


async def list_queue(request: web.Request) -> web.Response:
    await authenticate(request, "admin")
    data = await ask(request.app[DEPS_KEY].drafter, rpc.MANUAL_QUEUE, rpc.Listing(_limit(request)))
    return web.json_response({"items": data.items})


async def _record(request: web.Request, event: Event, principal: Principal, action: str) -> None:
    """The audit row and the event in one outbox unit: 202 once both are committed
    (published right after, or by the sweeper if NATS is away); a 503 means nothing
    happened, so a retry cannot make a second decision."""
    details = {"event_id": event.id, "token": principal.name, **_audit_details(event)}
    try:
        await request.app[DEPS_KEY].audited([event], action, event.thread, "HUMAN", details)
    except Exception as exc:
        log.exception("api_record_failed", action=action)
        raise Unavailable(f"could not record the decision ({type(exc).__name__})") from exc


def _audit_details(event: Event) -> dict[str, Any]:
    if isinstance(event, DraftDecided) and event.action == "send":
        return {"action": "send", "number": event.number, "body": event.text}
    if isinstance(event, DraftDecided):
        return {"action": event.action, "draft_id": event.draft_id, "ref": event.ref}
    if isinstance(event, ContactPaused):
        return {"paused": event.paused, "reason": event.reason}
    return {}


async def _find_pending(request: web.Request, key: str) -> dict[str, Any] | None:
    data = await ask(request.app[DEPS_KEY].drafter, rpc.DRAFTS_PENDING, rpc.Listing(_MAX_LIMIT))
    for draft in data.drafts:
        if isinstance(draft, dict) and key in (draft.get("draft_id"), draft.get("ref")):
            return draft
    return None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def decide_draft(
    request: web.Request,
    principal: Principal,
    *,
    action: Literal["approve", "reject", "edit"],
    key: str,
    text: str | None,
    notes: str,
    given_thread: str | None,
    source: DecisionSource,
) -> DraftDecided:
    """Publish (and audit) one owner decision on a pending draft named by id or ref.

    Shared by the API and the dashboard: the drafter checks the decision (draft known,
    still pending) when it consumes the event, exactly as for an SMS decision.
    """
    if action == "edit" and not (text and text.strip()):
        raise PayloadError("an edit needs a non-empty 'text'")
    try:
        draft = await _find_pending(request, key)
    except Unavailable:
        if not given_thread:
            raise Unavailable(
                "the drafter is not answering, so the draft's thread is unknown; "
                'retry later or pass {"thread": ...} with the draft id'
            ) from None
        # The drafter still checks the decision when it consumes it.
        draft = {"draft_id": key} if _is_uuid(key) else {"ref": key}
    else:
        if draft is None:
            raise DraftNotFound(f"no pending draft with id or ref {key!r}")
    if given_thread:
        _, thread = number_and_thread(given_thread)
    elif draft.get("thread") or draft.get("to_number"):
        thread = str(draft.get("thread") or thread_of(str(draft["to_number"])))
    else:
        raise web.HTTPBadGateway(
            text=json.dumps({"error": "the drafter's draft has no thread"}),
            content_type="application/json",
        )
    decision_action: DecisionAction = action
    event = DraftDecided(
        thread=thread,
        action=decision_action,
        reviewer=f"{source}:{principal.name}",
        source=source,
        ref=draft.get("ref"),
        draft_id=draft.get("draft_id"),
        text=text if action == "edit" else None,
        notes=notes,
    )
    await _record(request, event, principal, "draft.decided")
    log.info("owner_decision", action=action, source=source, draft_id=event.draft_id, thread=thread)
    return event


def _decide(action: Literal["approve", "reject", "edit"]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        body = await json_body(request)
        given = _str_field(body, "thread", max_len=32) or _str_field(body, "number", max_len=32)
        try:
            event = await decide_draft(
                request,
                principal,
                action=action,
                key=request.match_info["draft"],
                text=_str_field(body, "text"),
                notes=_str_field(body, "notes") or _str_field(body, "reason") or "",
                given_thread=given,
                source="api",
            )
        except DraftNotFound as exc:
            return json_error(404, str(exc))
        return web.json_response(
            {
                "status": "accepted",
                "event_id": event.id,
                "action": action,
                "draft_id": event.draft_id,
                "ref": event.ref,
                "thread": event.thread,
            },
            status=202,
        )

    return handler


async def pause_thread(
    request: web.Request, principal: Principal, *, number: str, paused: bool, reason: str, source: str
) -> ContactPaused:
    """Publish (and audit) a pause or resume of one thread; shared by the API and the dashboard."""
    e164, thread = number_and_thread(number)
    event = ContactPaused(
        thread=thread, number=e164, paused=paused, actor=f"{source}:{principal.name}", reason=reason
    )
    await _record(request, event, principal, "contact.paused" if paused else "contact.resumed")
    log.info("owner_pause", paused=paused, source=source, thread=thread)
    return event


def _pause(paused: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request, "admin")
        number = request.match_info["number"]
        number_and_thread(number)  # a bad number is a 400 before the body is read
        body = await json_body(request)
        event = await pause_thread(
            request,
            principal,
            number=number,
            paused=paused,
            reason=_str_field(body, "reason", max_len=500) or "",
            source="api",
        )
        return web.json_response(
            {"status": "accepted", "event_id": event.id, "thread": event.thread, "paused": paused},
            status=202,
        )

    return handler


class OptedOut(Exception):
    """The lead opted out (STOP): nothing may be sent to them (the API answers 409)."""


#: Longest human reply (Twilio's limit for one concatenated message).
MAX_REPLY_CHARS = 1600


async def send_human_reply(
    request: web.Request, principal: Principal, *, number: str, text: str, source: DecisionSource
) -> DraftDecided:
    """A person's free-text reply to a lead from the business number (API and dashboard).

    The same path as an owner's ``SEND <ref> <text>`` SMS: a ``draft.decided`` with
    action ``send`` that the drafter checks, audits and publishes as ``outbound.human``
    (the sender's consent gate, outbox and status callbacks; HUMAN_TAKEOVER). An
    opted-out lead is refused here at once, so the caller gets a clear answer.
    """
    e164, thread = number_and_thread(number)
    body = text.strip()
    if not body:
        raise PayloadError("the message needs a non-empty 'text'")
    if len(body) > MAX_REPLY_CHARS:
        raise PayloadError(f"the message is longer than {MAX_REPLY_CHARS} characters")
    check = request.app[DEPS_KEY].opted_out
    if check is not None:
        try:
            if await check(e164):
                raise OptedOut(f"{e164} has opted out (STOP); nothing can be sent to them")
        except OptedOut:
            raise
        except Exception as exc:
            raise Unavailable(f"cannot check the lead's consent ({type(exc).__name__})") from exc
    event = DraftDecided(
        thread=thread,
        action="send",
        reviewer=f"{source}:{principal.name}",
        source=source,
        number=e164,
        text=body,
    )
    await _record(request, event, principal, "human_reply.requested")
    log.info("human_reply_requested", source=source, thread=thread)
    return event


async def post_message(request: web.Request) -> web.Response:
    principal = await authenticate(request, "admin")
    number = request.match_info["number"]
    number_and_thread(number)  # a bad number is a 400 before the body is read
    body = await json_body(request)
    text = _str_field(body, "text", max_len=MAX_REPLY_CHARS) or _str_field(
        body, "body", max_len=MAX_REPLY_CHARS
    )
    try:
        event = await send_human_reply(request, principal, number=number, text=text or "", source="api")
    except OptedOut as exc:
        return json_error(409, str(exc), reason="opted_out")
    return web.json_response(
        {
            "status": "accepted",
            "event_id": event.id,
            "request_id": f"human:{event.id}",
            "thread": event.thread,
            "takeover": True,
        },
        status=202,
    )


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/drafts", list_pending)
    app.router.add_get("/api/queue", list_queue)
    app.router.add_post("/api/drafts/{draft}/approve", _decide("approve"))
    app.router.add_post("/api/drafts/{draft}/reject", _decide("reject"))
    app.router.add_post("/api/drafts/{draft}/edit", _decide("edit"))
    app.router.add_post("/api/threads/{number}/pause", _pause(True))
    app.router.add_post("/api/threads/{number}/resume", _pause(False))
    app.router.add_post("/api/threads/{number}/messages", post_message)
