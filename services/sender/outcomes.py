"""Outcome events of final rows (outbound.sent / outbound.failed) and the owner's failure alert.

They are emitted into the unit (libs/event_outbox.py) that makes the row final, so
the row's status and its outcome commit together: never on the bus before the row
says so, never lost after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from libs import metrics
from libs.event_outbox import Unit
from libs.events import OutboundFailed, OutboundRequested, OutboundSent, thread_of
from libs.twilio_errors import describe
from services.sender.rows import ALERT_KINDS, FINAL, OutboxRow


def emit_outcome(unit: Unit, owners: Iterable[str], row: OutboxRow) -> None:
    """Emit the outcome of a final row (``row`` as the unit leaves it) and the owner alert."""
    if row.status not in FINAL:
        raise ValueError(f"outbox row {row.id} is {row.status}, not final")
    common: dict[str, Any] = {
        "thread": thread_of(row.to_number),
        "outbox_id": str(row.id),
        "to_number": row.to_number,
        "draft_id": row.draft_id,
        "request_id": row.request_id,
        "workflow_enrollment_id": row.workflow_enrollment_id,
        "kind": row.kind,
    }
    if row.status == "SENT":
        assert row.provider_sid is not None  # mark_sent always sets it
        unit.emit(OutboundSent(provider_sid=row.provider_sid, **common))
        return
    reason = row.failure_reason or "provider_error"
    unit.emit(
        OutboundFailed(
            error_code=row.error_code,
            error_message=row.error_message or "",
            permanent=True,
            reason=reason,
            provider_sid=row.provider_sid,
            **common,
        )
    )
    _alert_owners(unit, owners, row, reason)


def count_outcome(row: OutboxRow) -> None:
    """The sends metric, once the unit with the outcome has committed."""
    status = {"SENT": "sent", "REFUSED": "refused"}.get(row.status, "failed")
    metrics.SENDS.labels(status, row.kind).inc()


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


def _alert_owners(unit: Unit, owners: Iterable[str], row: OutboxRow, reason: str) -> None:
    body = alert_text(row, reason)
    if body is None:
        return
    for owner in sorted(owners):
        unit.emit(OutboundRequested.to_owner(owner, body, f"send-failed:{row.id}"))
