"""POST /leads: the lead webhook that starts contact_created workflows."""

from __future__ import annotations

import structlog
from aiohttp import web

from libs import metrics
from services.ingest.http_common import (
    DEPS_KEY,
    SETTINGS_KEY,
    Unavailable,
    authenticate,
)
from services.ingest.leads import decode_json_object, form_to_dict, parse_lead
from services.ingest.twilio_payload import FORM_CONTENT_TYPE, PayloadError, parse_form

log = structlog.get_logger("ingest")


async def post_lead(request: web.Request) -> web.Response:
    principal = await authenticate(request, "leads")
    body = await request.read()
    if request.content_type == "application/json":
        data = decode_json_object(body)
    elif request.content_type == FORM_CONTENT_TYPE:
        data = form_to_dict(parse_form(body))
    else:
        raise PayloadError("Content-Type must be application/json or " + FORM_CONTENT_TYPE)
    lead = parse_lead(
        data,
        default_region=request.app[SETTINGS_KEY].default_region,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    details = {"lead_id": lead.lead_id, "source": lead.source, "token": principal.name}
    try:
        # Audit row and lead.created in one outbox unit: 202 once committed (published
        # right after, or by the sweeper); a 503 means nothing was recorded.
        await request.app[DEPS_KEY].audited([lead], "lead.created", lead.thread, "SYSTEM", details)
    except Exception as exc:
        log.exception("lead_record_failed", lead_id=lead.lead_id)
        raise Unavailable(f"could not record the lead ({type(exc).__name__})") from exc
    metrics.WEBHOOKS_RECEIVED.labels("lead", "recorded").inc()
    log.info("lead_created", lead_id=lead.lead_id, thread=lead.thread, source=lead.source)
    return web.json_response(
        {"lead_id": lead.lead_id, "phone": lead.phone, "thread": lead.thread, "event_id": lead.id},
        status=202,
    )
