"""The outbox's data: a typed outbox row, a new message, the lease, and their vocabulary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from libs.events import DraftApproved, HumanReply, OutboundRequested

SERVICE = "sender"
OWNER_KINDS = frozenset({"owner_prompt", "owner_alert"})
#: Lead-facing kinds whose failure the owner is told about by SMS.
ALERT_KINDS = frozenset({"approved_draft", "reply", "workflow"})
FINAL = frozenset({"SENT", "FAILED_SEND", "REFUSED"})
#: A timer that fires this early still counts as due (scheduler clock skew).
EARLY_TOLERANCE = timedelta(seconds=1)
#: Errors of a database session that died under us (terminated, failover, network).
CONNECTION_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def contact_key(number: str) -> str:
    """One spelling per phone number ("+15551234567"), so projections and rows always match."""
    text = number.strip()
    digits = text.lstrip("+")
    return f"+{digits}" if digits.isdigit() else text


def quiet_hours_timer_id(outbox_id: uuid.UUID | str) -> str:
    return f"sender-quiet-hours:{outbox_id}"


class LeaseLost(Exception):
    """Another worker took the row over: this worker's writes are fenced off."""


class Lease(msgspec.Struct, frozen=True):
    """The fencing token this worker holds on one outbox row."""

    outbox_id: uuid.UUID
    epoch: int


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    dedup_key: str
    kind: str
    to_number: str
    body: str
    media_urls: Sequence[str] = ()
    draft_id: str | None = None
    draft_version: int | None = None
    request_id: str | None = None
    in_reply_to: str | None = None
    workflow_enrollment_id: str | None = None
    not_before: datetime | None = None

    @classmethod
    def of(
        cls, event: DraftApproved | OutboundRequested | HumanReply, kind: str, **optional: Any
    ) -> NewMessage:
        """The message ``event`` asks for: once per its dedup id, to its number, its body;
        ``optional`` sets the fields with defaults that this kind of event fills in."""
        return cls(
            dedup_key=event.dedup_id(), kind=kind, to_number=event.to_number, body=event.body, **optional
        )


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``outbound_messages`` (migrations 0001, 0002 and 0005), as the outbox reads it."""

    id: uuid.UUID
    dedup_key: str
    kind: str
    to_number: str
    body: str
    media_urls: list[str]
    lead_facing: bool
    draft_id: str | None
    draft_version: int | None
    request_id: str | None
    in_reply_to: str | None
    workflow_enrollment_id: str | None
    status: str
    attempts: int
    not_before: datetime | None
    retry_at: datetime | None
    provider_sid: str | None
    provider_status: str | None
    error_code: int | None
    error_message: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    sending_started_at: datetime | None
    sent_at: datetime | None
    lease_owner: str | None
    lease_epoch: int
    lease_until: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record | Mapping[str, Any]) -> OutboxRow:
        """Build from ``SELECT *``: columns a later migration adds are ignored until named here."""
        return cls(**{name: record[name] for name in cls.__struct_fields__})
