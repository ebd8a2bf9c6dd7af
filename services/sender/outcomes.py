"""Outcome events of final rows (outbound.sent / outbound.failed) and the owner's failure alert."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
import structlog

from libs import metrics
from libs.bus import Bus
from libs.consumer import Decision, Retry
from libs.events import OutboundFailed, OutboundRequested, OutboundSent, thread_of
from libs.twilio_errors import describe
from services.sender.rows import ALERT_KINDS, OutboxRow
from services.sender.store import Q

log = structlog.get_logger("sender.outbox")  # same logger as before the split


async def publish_outcome(
    conn: asyncpg.Connection, bus: Bus, owners: Iterable[str], row: OutboxRow, retry_delay: float
) -> Decision:
    """Publish outbound.sent / outbound.failed (and the owner alert) until it is on the bus."""
    if row.event_published:
        return None
    common: dict[str, Any] = {
        "thread": thread_of(row.to_number),
        "outbox_id": str(row.id),
        "to_number": row.to_number,
        "draft_id": row.draft_id,
        "request_id": row.request_id,
        "workflow_enrollment_id": row.workflow_enrollment_id,
        "kind": row.kind,
    }
    try:
        if row.status == "SENT":
            assert row.provider_sid is not None  # mark_sent always sets it
            await bus.publish(OutboundSent(provider_sid=row.provider_sid, **common))
        else:
            reason = row.failure_reason or "provider_error"
            await bus.publish(
                OutboundFailed(
                    error_code=row.error_code,
                    error_message=row.error_message or "",
                    permanent=True,
                    reason=reason,
                    provider_sid=row.provider_sid,
                    **common,
                )
            )
            await _alert_owners(bus, owners, row, reason)
    except Exception as exc:  # NATS unavailable: the row stays unpublished for a retry
        log.warning("publish_outcome_failed", outbox_id=str(row.id), error=repr(exc))
        return Retry(retry_delay, "publishing the outcome failed")
    await conn.execute(Q.mark_published, row.id, row.status)
    status = {"SENT": "sent", "REFUSED": "refused"}.get(row.status, "failed")
    metrics.SENDS.labels(status, row.kind).inc()
    return None


def alert_text(row: OutboxRow, reason: str) -> str | None:
    """The owner's "Not delivered" SMS for a failed row, or None when none is due."""
    if not row.lead_facing or row.kind not in ALERT_KINDS:
        return None
    if reason == "opted_out" and row.kind != "approved_draft":
        return None  # workflow steps to opted-out contacts are expected, not news
    # A known Twilio code says what happened and what to do (libs/data/twilio_errors.yaml).
    explained = describe(row.error_code) if reason != "opted_out" else None
    why = explained or {
        "opted_out": "they opted out (STOP).",
        "retries_exhausted": "Twilio kept failing.",
        "undelivered": "the carrier did not deliver it.",
    }.get(reason, f"Twilio error: {row.error_message}.")
    preview = row.body if len(row.body) <= 60 else row.body[:57] + "..."
    return f'Not delivered to {row.to_number}: {why} Message: "{preview}"'


async def _alert_owners(bus: Bus, owners: Iterable[str], row: OutboxRow, reason: str) -> None:
    body = alert_text(row, reason)
    if body is None:
        return
    for owner in sorted(owners):
        await bus.publish(
            OutboundRequested(
                thread=thread_of(owner),
                request_id=f"send-failed:{row.id}:{owner}",
                to_number=owner,
                body=body,
                kind="owner_alert",
            )
        )
