"""Event handlers: each turns an event into outbox work and returns a consumer decision."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from libs.consumer import Decision, Delivery, Handler
from libs.events import (
    ContactOptin,
    ContactOptout,
    ContactUpdated,
    DraftApproved,
    Event,
    HumanReply,
    OutboundRequested,
    OutboundStatus,
    TimerFired,
)
from services.sender.outbox import NewMessage, Outbox

log = structlog.get_logger("sender.handlers")

TIME_ZONE_FIELDS = frozenset({"timezone", "time_zone", "tz"})


def build_handlers(outbox: Outbox) -> Mapping[type[Event], Handler]:
    return {**_intake_handlers(outbox), **_timer_handlers(outbox), **_projection_handlers(outbox)}


def _intake_handlers(outbox: Outbox) -> dict[type[Event], Handler]:
    """Events that make or wake an outbox row, then drive it."""

    async def accept_and_drive(msg: NewMessage) -> Decision:
        return await outbox.drive(await outbox.accept(msg))

    async def on_draft_approved(event: DraftApproved, _: Delivery) -> Decision:
        return await accept_and_drive(
            NewMessage.of(
                event,
                "approved_draft",
                draft_id=event.draft_id,
                draft_version=event.version,
                in_reply_to=event.in_reply_to or None,
            )
        )

    async def on_outbound_requested(event: OutboundRequested, _: Delivery) -> Decision:
        return await accept_and_drive(
            NewMessage.of(
                event,
                event.kind,
                media_urls=event.media_urls,
                request_id=event.request_id,
                workflow_enrollment_id=event.workflow_enrollment_id,
                not_before=event.not_before,
            )
        )

    async def on_human_reply(event: HumanReply, _: Delivery) -> Decision:
        # A person's reply: lead-facing like any other (consent gate, outbox, callbacks).
        return await accept_and_drive(NewMessage.of(event, "human_reply", request_id=event.request_id))

    return {
        DraftApproved: on_draft_approved,
        OutboundRequested: on_outbound_requested,
        HumanReply: on_human_reply,
    }


def _timer_handlers(outbox: Outbox) -> dict[type[Event], Handler]:
    """A quiet-hours timer fired: drive the deferred row again."""

    async def on_timer_fired(event: TimerFired, _: Delivery) -> Decision:
        if event.kind != "quiet_hours":
            return None
        raw = event.payload.get("outbox_id")
        try:
            outbox_id = uuid.UUID(str(raw))
        except ValueError:
            log.warning("timer_without_outbox_id", timer_id=event.timer_id)
            return None
        return await outbox.drive(outbox_id)

    return {TimerFired: on_timer_fired}


def _projection_handlers(outbox: Outbox) -> dict[type[Event], Handler]:
    """Events the sender keeps projections of: delivery status, consent, time zones."""

    async def on_status(event: OutboundStatus, _: Delivery) -> Decision:
        return await outbox.record_status(event)

    async def on_consent(event: ContactOptout | ContactOptin, _: Delivery) -> Decision:
        return await outbox.record_consent(event)

    async def on_contact_updated(event: ContactUpdated, _: Delivery) -> Decision:
        if event.field not in TIME_ZONE_FIELDS or not isinstance(event.value, str):
            return None
        try:
            ZoneInfo(event.value)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown_time_zone", number=event.number, value=event.value)
            return None
        await outbox.record_time_zone(event.number, event.value, event.occurred_at)
        return None

    return {
        OutboundStatus: on_status,
        ContactOptout: on_consent,
        ContactOptin: on_consent,
        ContactUpdated: on_contact_updated,
    }
