"""What every Twilio webhook goes through: form parsing, the signature and the account."""

from __future__ import annotations

import structlog
from aiohttp import web
from multidict import MultiDictProxy

from services.ingest.http_common import SETTINGS_KEY, SIGNATURE_KEY
from services.ingest.signature import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER
from services.ingest.twilio_payload import FORM_CONTENT_TYPE, PayloadError, parse_form

log = structlog.get_logger("ingest")


async def read_twilio_form(request: web.Request) -> MultiDictProxy[str]:
    if request.content_type != FORM_CONTENT_TYPE:
        raise PayloadError(
            f"Content-Type must be {FORM_CONTENT_TYPE}, got {request.content_type or 'none'}"
        )
    # request.read() enforces client_max_size and raises 413 past it.
    return parse_form(await request.read())


async def read_signed_form(request: web.Request) -> MultiDictProxy[str]:
    """The webhook's form, handed out only once its Twilio signature checks (403 otherwise)."""
    form = await read_twilio_form(request)
    check_signature(request, form)
    return form


def check_signature(request: web.Request, form: MultiDictProxy[str]) -> None:
    result = request.app[SIGNATURE_KEY].check(
        signature=request.headers.get(SIGNATURE_HEADER),
        settings_header=request.headers.get(SIGNATURE_SETTINGS_HEADER),
        raw_path=request.raw_path,
        seen_url=lambda: str(request.url),
        form=form,
    )
    if result.ok:
        return
    log.warning(
        "twilio_signature_rejected",
        reason=result.reason,
        checked_url=result.url,
        seen_url=str(request.url),
        algorithm=result.algorithm,
        remote=request.remote,
        message_sid=form.get("MessageSid", ""),
        call_sid=form.get("CallSid", ""),
        hint="the URL must be exactly the one configured in Twilio: check "
        "REPLYLINE_PUBLIC_BASE_URL (https vs http, port, path prefix) and the auth token",
    )
    raise web.HTTPForbidden(text=f"invalid Twilio signature ({result.reason})\n")


def check_account(request: web.Request, account_sid: str, message_sid: str) -> None:
    """A signed webhook for another account (same auth token, e.g. a subaccount) is refused."""
    expected = request.app[SETTINGS_KEY].twilio_account_sid
    if not expected or account_sid == expected:
        return
    log.warning(
        "twilio_account_rejected",
        account_sid=account_sid or None,
        expected_account_sid=expected,
        message_sid=message_sid,
        remote=request.remote,
    )
    raise web.HTTPForbidden(text="webhook is not for the configured Twilio account\n")
