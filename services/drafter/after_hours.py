"""The after-hours acknowledgement: a lead who texts while the business is closed gets the
profile's fixed text once per closed period (docs/business-hours.md).

Not an AI draft: the owner wrote it in the profile, like the templates, so it needs no
approval; the normal draft-and-approve flow still runs for the message. It goes through
the sender's outbox (``outbound.requested`` kind ``after_hours``), so the consent gate
(and quiet hours) apply as for every lead-facing text. Once per period is a row in
``after_hours_acks`` (thread, next opening), inserted in the unit of work that emits the
request (services/drafter/work.py): the request is published after that commit, and a
redelivery finds the row and asks for nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from libs.event_outbox import EventOutbox
from libs.events import InboundRouted, OutboundRequested
from services.drafter.business_hours import is_open, next_opening, opening_text
from services.drafter.profile import Profile
from services.drafter.prompt import language_of
from services.drafter.store import Q
from services.drafter.work import record

log = structlog.get_logger("drafter")

#: Routing decisions that are a lead writing to us (not STOP/HELP, a paused thread, the owner).
LEAD_MESSAGES = frozenset({"draft", "needs_review"})


async def acknowledge_if_closed(
    event: InboundRouted,
    *,
    profile: Profile,
    outbox: EventOutbox,
    clock: Callable[[], datetime],
) -> bool:
    """Send the acknowledgement if it is on, the business is closed and this closed period
    has none for the thread yet. True when it was requested by this call."""
    hours = profile.opening_hours
    if not profile.after_hours_reply.enabled or hours is None:
        return False
    if event.decision not in LEAD_MESSAGES:
        return False
    now = clock()
    if is_open(hours, now):
        return False
    opens = next_opening(hours, now)
    if opens is None:
        return False  # no opening hours at all: there is no "after" to promise
    language = language_of(event.language)
    body = profile.render(
        profile.after_hours_reply.text.get(language),
        language,
        next_open=opening_text(opens, now, language),
    )
    request_id = f"after_hours:{event.thread}:{opens.isoformat()}"
    async with outbox.unit() as u:
        claimed = await u.conn.fetchval(
            Q.claim_after_hours_ack, event.thread, opens, event.message_sid, request_id
        )
        if claimed is None:
            return False  # this closed period was acknowledged already
        request = OutboundRequested(
            thread=event.thread,
            request_id=request_id,
            to_number=event.from_number,
            body=body,
            kind="after_hours",
        )
        details = {
            "message_sid": event.message_sid,
            "request_id": request_id,
            "next_open": opens.isoformat(),
            "language": language,
            "body": body,
        }
        await record(u, "after_hours_ack", event.thread, details, emit=[request])
    log.info("after_hours_ack", thread=event.thread, next_open=opens.isoformat())
    return True
