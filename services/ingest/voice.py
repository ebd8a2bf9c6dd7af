"""Calls to the business number: forward to the owner, and report the ones nobody answered.

Twilio posts the incoming call to the number's voice URL (``POST /twilio/voice``).
Ingest answers TwiML that rings ``call_forward_number`` for ``call_ring_timeout_s``
seconds (``<Dial timeout action=/twilio/voice/dial-status>``); when the forwarded leg
ends, Twilio posts its ``DialCallStatus`` to the action URL. A call that was not
answered (no-answer, busy, failed, canceled), or any call when no forward number is
set, becomes ``call.missed.<thread>``; the scheduler's ``call_missed`` workflows text
the caller back (docs/missed-calls.md). Both webhooks are signed and checked like the
SMS ones. The call's audit row and its call.missed commit together (one outbox unit)
and the event is published after the commit; its Nats-Msg-Id is the CallSid, so
Twilio's retries publish it once.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from libs import metrics
from libs.events import CallMissed, MissedReason, thread_of
from services.ingest.http_common import DEPS_KEY, SETTINGS_KEY, Unavailable
from services.ingest.twilio_checks import check_account, read_signed_form
from services.ingest.twilio_payload import parse_dial_status, parse_voice

log = structlog.get_logger("ingest")

DIAL_STATUS_PATH = "/twilio/voice/dial-status"
#: DialCallStatus values that mean nobody picked up.
MISSED = frozenset({"no-answer", "busy", "failed", "canceled"})
#: Only a real number can be texted back ("Anonymous", "client:alice", "+266696687"
#: for a withheld number are not; the last is E.164-shaped, so it is named here).
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_WITHHELD = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696"})


def textable(number: str) -> bool:
    return bool(_E164.fullmatch(number)) and number not in _WITHHELD


def twiml(response: VoiceResponse) -> web.Response:
    return web.Response(text=str(response), content_type="text/xml", charset="utf-8")


def _goodbye(message: str) -> VoiceResponse:
    response = VoiceResponse()
    if message:
        response.say(message)
    response.hangup()
    return response


async def _missed(
    request: web.Request, *, call_sid: str, caller: str, to_number: str, reason: MissedReason
) -> None:
    """Audit the call in its thread and emit call.missed (if the caller can be texted)."""
    deps = request.app[DEPS_KEY]
    thread = thread_of(caller) if caller else "unknown"
    can_text = textable(caller)
    events = (
        [CallMissed(thread=thread, call_sid=call_sid, from_number=caller, to_number=to_number, reason=reason)]
        if can_text
        else []
    )
    try:
        await deps.audited(
            events,
            "call_missed",
            thread if can_text else None,
            "SYSTEM",
            {"call_sid": call_sid, "reason": reason, "text_back": can_text},
        )
    except Exception as exc:
        log.exception("call_missed_record_failed", call_sid=call_sid)
        raise Unavailable(f"could not record the missed call ({type(exc).__name__})") from exc
    log.info("call_missed", call_sid=call_sid, thread=thread, reason=reason, text_back=can_text)


async def twilio_voice(request: web.Request) -> web.Response:
    form = await read_signed_form(request)
    call = parse_voice(form)
    check_account(request, call.account_sid, call.call_sid)
    settings = request.app[SETTINGS_KEY]
    metrics.WEBHOOKS_RECEIVED.labels("voice", "recorded").inc()
    forward = settings.call_forward_number
    if not forward or forward == call.from_number:
        # Nobody to ring (or the owner calling the business line from the forward phone).
        if forward:
            return twiml(_goodbye(""))
        await _missed(
            request,
            call_sid=call.call_sid,
            caller=call.from_number,
            to_number=call.to_number,
            reason="no_forward",
        )
        return twiml(_goodbye(settings.call_missed_message))
    thread = thread_of(call.from_number) if textable(call.from_number) else None
    try:
        await request.app[DEPS_KEY].audit(
            "call_received",
            thread,
            "SYSTEM",
            {"call_sid": call.call_sid, "forwarded_to": forward},
        )
    except Exception as exc:
        raise Unavailable(f"could not audit the call ({type(exc).__name__})") from exc
    response = VoiceResponse()
    # The public URL: Twilio calls it and signs it, like the voice URL itself.
    dial = response.dial(
        timeout=settings.call_ring_timeout_s,
        action=settings.public_base_url.rstrip("/") + DIAL_STATUS_PATH,
        method="POST",
        caller_id=call.to_number or None,
    )
    dial.number(forward)
    log.info("call_forwarded", call_sid=call.call_sid, thread=thread)
    return twiml(response)


async def twilio_dial_status(request: web.Request) -> web.Response:
    form = await read_signed_form(request)
    status = parse_dial_status(form)
    check_account(request, status.account_sid, status.call_sid)
    if status.dial_call_status not in MISSED:
        thread = thread_of(status.from_number) if textable(status.from_number) else None
        try:
            await request.app[DEPS_KEY].audit(
                "call_answered", thread, "SYSTEM", {"call_sid": status.call_sid}
            )
        except Exception as exc:
            raise Unavailable(f"could not audit the call ({type(exc).__name__})") from exc
        return twiml(_goodbye(""))
    reason: MissedReason = status.dial_call_status  # type: ignore[assignment]
    await _missed(
        request,
        call_sid=status.call_sid,
        caller=status.from_number,
        to_number=status.to_number,
        reason=reason,
    )
    return twiml(_goodbye(request.app[SETTINGS_KEY].call_missed_message))


def add_voice_routes(app: web.Application) -> None:
    app.router.add_post("/twilio/voice", twilio_voice)
    app.router.add_post(DIAL_STATUS_PATH, twilio_dial_status)
