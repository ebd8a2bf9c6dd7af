"""The ingest HTTP application: Twilio webhooks, the lead webhook and the owner API.

``create_app(settings, deps)`` builds the aiohttp app from ports (recorder, publisher,
token verifier, drafter API, audit) so the HTTP behaviour can be tested with fakes
and run for real with Postgres and NATS behind them (see ``service.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from libs import metrics
from libs.events import OutboundStatus, thread_of
from libs.tracing import current_traceparent, new_traceparent, trace_id_of
from services.ingest.api import add_api_routes
from services.ingest.contacts_api import add_contacts_routes
from services.ingest.http_common import (
    DEPS_KEY,
    SETTINGS_KEY,
    SIGNATURE_KEY,
    IngestDeps,
    Unavailable,
    json_error,
)
from services.ingest.lead_handler import post_lead
from services.ingest.metrics import metrics_middleware
from services.ingest.settings import IngestSettings
from services.ingest.signature import SignatureCheck
from services.ingest.twilio_checks import check_account, read_signed_form
from services.ingest.twilio_payload import PayloadError, parse_inbound, parse_status, raw_form
from services.ingest.voice import add_voice_routes
from services.ingest.workflow_admin_api import add_workflow_admin_routes

log = structlog.get_logger("ingest")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@web.middleware
async def trace_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    incoming = request.headers.get("traceparent")
    traceparent = incoming if trace_id_of(incoming) else new_traceparent()
    token = current_traceparent.set(traceparent)
    with structlog.contextvars.bound_contextvars(
        trace_id=trace_id_of(traceparent), method=request.method, path=request.path
    ):
        try:
            return await handler(request)
        finally:
            current_traceparent.reset(token)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except PayloadError as exc:
        log.info("request_malformed", error=str(exc))
        return json_error(400, str(exc))
    except Unavailable as exc:
        log.warning("dependency_unavailable", error=str(exc))
        return web.json_response({"error": str(exc)}, status=503, headers={"Retry-After": "5"})
    except web.HTTPException as exc:
        if exc.status == 413:
            log.info("request_too_large", content_length=request.content_length)
        raise


async def twilio_sms(request: web.Request) -> web.Response:
    form = await read_signed_form(request)
    sms = parse_inbound(form)
    check_account(request, sms.account_sid, sms.message_sid)
    deps = request.app[DEPS_KEY]
    try:
        recorded = await deps.recorder.record(sms, raw_form(form))
    except Exception as exc:
        # Not the sender's fault: 503 makes Twilio (with retries configured) try again.
        # Either nothing was committed (the retry records the message from scratch) or
        # the row committed but its events are not on the bus yet (NotPublished: the
        # retry is a duplicate and publishes them before it answers 200).
        log.exception("inbound_record_failed", message_sid=sms.message_sid)
        raise Unavailable(f"could not record the message ({type(exc).__name__})") from exc
    metrics.WEBHOOKS_RECEIVED.labels("sms", "duplicate" if recorded.duplicate else "recorded").inc()
    log.info(
        "inbound_duplicate" if recorded.duplicate else "inbound_received",
        message_sid=sms.message_sid,
        thread=recorded.thread,
        num_media=sms.num_media,
    )
    return web.Response(text=EMPTY_TWIML, content_type="text/xml", charset="utf-8")


async def twilio_status(request: web.Request) -> web.Response:
    form = await read_signed_form(request)
    status = parse_status(form)
    check_account(request, status.account_sid, status.message_sid)
    event = OutboundStatus(
        thread=thread_of(status.to_number) if status.to_number else "unknown",
        provider_sid=status.message_sid,
        status=status.message_status,
        error_code=status.error_code,
        to_number=status.to_number,
    )
    try:
        # A direct publish: a status callback writes no row in ingest (the sender records it).
        await request.app[DEPS_KEY].publish(event)
    except Exception as exc:
        log.exception("status_publish_failed", message_sid=status.message_sid)
        raise Unavailable(f"could not publish the status ({type(exc).__name__})") from exc
    metrics.WEBHOOKS_RECEIVED.labels("status", "recorded").inc()
    log.info(
        "outbound_status",
        message_sid=status.message_sid,
        status=status.message_status,
        error_code=status.error_code,
        thread=event.thread,
    )
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(settings: IngestSettings, deps: IngestDeps) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, trace_middleware, error_middleware],
    )
    app[SETTINGS_KEY] = settings
    app[DEPS_KEY] = deps
    app[SIGNATURE_KEY] = SignatureCheck(settings.webhook_auth_token, settings.public_base_url)
    app.router.add_post("/twilio/sms", twilio_sms)
    app.router.add_post("/twilio/status", twilio_status)
    add_voice_routes(app)
    app.router.add_post("/leads", post_lead)
    app.router.add_get("/healthz", health)
    add_api_routes(app)
    add_workflow_admin_routes(app)
    add_contacts_routes(app)
    return app
