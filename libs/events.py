"""Every event that crosses the bus, as tagged msgspec Structs.

The tag is the subject prefix (``<domain>.<event>``); the full subject adds the
thread, the contact's E.164 number without ``+``. Every field added after the
first release has a default so that events already in the stream still decode,
and unknown fields are ignored so that older services read newer events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import msgspec


def _uuid() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def thread_of(number: str) -> str:
    """Subject token for a phone number: E.164 without '+', or a safe token for anything else."""
    token = number.strip().lstrip("+")
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in token)
    return cleaned or "unknown"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all events. ``thread`` is the subject's last token (see :func:`thread_of`)."""

    thread: str
    id: str = msgspec.field(default_factory=_uuid)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)

    #: Fields whose values make the event unique; joined into the Nats-Msg-Id.
    dedup_fields: ClassVar[tuple[str, ...]] = ("id",)

    @property
    def tag(self) -> str:
        # __struct_config__ is a plain attribute; msgspec.inspect would rebuild type info per call.
        tag: str = type(self).__struct_config__.tag  # type: ignore[assignment]
        return tag

    def subject(self) -> str:
        return f"{self.tag}.{self.thread}"

    def dedup_id(self) -> str:
        parts = [str(getattr(self, name)) for name in self.dedup_fields]
        return f"{self.tag}:{':'.join(parts)}"


# --- inbound ---------------------------------------------------------------


class Media(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    content_type: str = ""


class InboundReceived(Event, frozen=True, kw_only=True, tag="inbound.received"):
    """A Twilio inbound SMS/MMS, stored by ingest (unique MessageSid)."""

    message_sid: str
    from_number: str
    to_number: str
    body: str = ""
    num_media: int = 0
    media: tuple[Media, ...] = ()
    num_segments: int = 1
    account_sid: str = ""
    messaging_service_sid: str = ""
    opt_out_type: str = ""
    received_at: datetime = msgspec.field(default_factory=utcnow)
    dedup_fields: ClassVar[tuple[str, ...]] = ("message_sid",)


RoutingDecision = Literal[
    "draft",  # rule 9: a reply will be drafted
    "needs_review",  # rules 5-8: a human should look
    "log_only",  # rule 4: paused thread
    "owner_command",  # rule 2: published as draft.decided instead
    "opt_out",
    "opt_in",
    "help",
    "duplicate",
    "forward",  # thread in HUMAN_TAKEOVER: the drafter forwards the message to the owners
]


class InboundRouted(Event, frozen=True, kw_only=True, tag="inbound.routed"):
    """The router's decision for one inbound message, with the scores behind it."""

    message_sid: str
    from_number: str
    to_number: str = ""
    body: str = ""
    decision: RoutingDecision
    rule: str
    status: str  # message lifecycle status (RECEIVED, NEEDS_REVIEW, DRAFT_PENDING_APPROVAL, ...)
    language: str | None = None
    language_confidence: float | None = None
    sentiment: str | None = None
    sentiment_score: float | None = None
    intent: str | None = None
    intent_score: float | None = None
    stream_seq: int = 0  # sequence of the inbound.received event, for per-thread ordering
    dedup_fields: ClassVar[tuple[str, ...]] = ("message_sid",)


# --- drafts and approvals --------------------------------------------------

DecisionAction = Literal[
    "approve",
    "reject",
    "edit",
    "unclear",
    # the owner console (docs/drafter.md, "Human takeover"): not decisions on a draft
    "send",  # a person's free-text reply to the lead of ``ref`` (or ``number``)
    "pause",
    "resume",
    "list",
    "help",
]
DecisionSource = Literal["sms", "api", "dashboard"]


class DraftDecided(Event, frozen=True, kw_only=True, tag="draft.decided"):
    """An owner's decision (or an attempt at one), not yet checked against the drafts.

    ``thread`` is the reviewer's number for SMS decisions, the lead's thread for API ones.
    ``ref`` is None for a bare reply ("YES") or when the command named none. A ref
    names one draft *version* (an edit gets a new ref): the decision applies to that
    version only, never to a newer one (docs/drafter.md, "Which version a decision
    applies to").
    """

    action: DecisionAction
    reviewer: str  # owner phone number, or API user
    source: DecisionSource
    ref: str | None = None
    draft_id: str | None = None
    text: str | None = None  # new text for an edit, the raw SMS for "unclear"
    notes: str = ""
    message_sid: str = ""  # the owner's SMS, when the decision came by SMS
    #: When ingest received the owner's SMS. A bare reply ("YES") never applies to a
    #: draft version prompted too shortly before it (the owner cannot have read it).
    received_at: datetime | None = None
    #: The lead's number for a "send" from the API/dashboard (SMS sends name a ``ref``).
    number: str = ""
    dedup_fields: ClassVar[tuple[str, ...]] = ("id",)


class DraftCreated(Event, frozen=True, kw_only=True, tag="draft.created"):
    draft_id: str
    version: int
    ref: str
    to_number: str
    body: str
    in_reply_to: str = ""  # inbound MessageSid
    intent: str | None = None
    language: str | None = None
    source: Literal["llm", "template", "edit", "workflow"] = "template"
    dedup_fields: ClassVar[tuple[str, ...]] = ("draft_id", "version")


class DraftRequested(Event, frozen=True, kw_only=True, tag="draft.requested"):
    """Ask the drafter to put a ready-made lead message through the owner's approval loop.

    Published by the scheduler for a workflow ``send_sms`` step with ``approval: required``;
    the drafter stores it as a draft (idempotent on ``request_id``) and prompts the owner.
    """

    request_id: str
    workflow_enrollment_id: str
    step_id: str
    to_number: str = ""
    body: str = ""
    source: Literal["workflow"] = "workflow"
    dedup_fields: ClassVar[tuple[str, ...]] = ("request_id",)


class DraftApproved(Event, frozen=True, kw_only=True, tag="draft.approved"):
    draft_id: str
    version: int
    to_number: str
    body: str
    reviewer: str
    in_reply_to: str = ""
    request_id: str | None = None  # the draft.requested it answers (workflow drafts)
    workflow_enrollment_id: str | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("draft_id", "version")


class DraftRejected(Event, frozen=True, kw_only=True, tag="draft.rejected"):
    draft_id: str
    version: int
    reviewer: str
    reason: str = ""
    request_id: str | None = None  # the draft.requested it answers (workflow drafts)
    workflow_enrollment_id: str | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("draft_id", "version")


# --- outbound --------------------------------------------------------------

OutboundKind = Literal[
    "owner_prompt", "owner_alert", "workflow", "reply", "system", "human_reply", "after_hours"
]
#: ``after_hours``: the profile's fixed acknowledgement to a lead who texts while the
#: business is closed (drafter; lead-facing: consent gate and quiet hours apply).
HumanChannel = Literal["sms", "api", "dashboard"]
#: The kinds that go to an owner number (no consent gate, no quiet hours).
OwnerKind = Literal["owner_prompt", "owner_alert"]


class OutboundRequested(Event, frozen=True, kw_only=True, tag="outbound.requested"):
    """Ask the sender to deliver a message.

    Owner prompts and alerts go to the owner and skip the lead consent gate and
    quiet hours; everything else is lead-facing and passes both.
    """

    request_id: str
    to_number: str
    body: str
    kind: OutboundKind
    media_urls: tuple[str, ...] = ()
    not_before: datetime | None = None
    workflow_enrollment_id: str | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("request_id",)

    @classmethod
    def to_owner(
        cls, owner: str, body: str, request_key: str, kind: OwnerKind = "owner_alert"
    ) -> OutboundRequested:
        """A message to one owner number, on the owner's own thread; one request per owner
        (``<request_key>:<owner>``), so telling every owner is one event each."""
        return cls(
            thread=thread_of(owner),
            request_id=f"{request_key}:{owner}",
            to_number=owner,
            body=body,
            kind=kind,
        )


class HumanReply(Event, frozen=True, kw_only=True, tag="outbound.human"):
    """A person's free-text reply to a lead, from the business number.

    Published only by the drafter, which checked who asked (an owner number, an
    API token, a dashboard login) and audited it. The sender sends it through the
    outbox like any lead-facing message (consent gate, at-most-once, status
    callbacks; quiet hours per ``human_reply_quiet_hours``); the router puts the
    thread in HUMAN_TAKEOVER. ``request_id`` names the send (idempotency).
    """

    request_id: str
    to_number: str
    body: str
    author: str  # owner number, "api:<token name>", "dashboard:<user>"
    channel: HumanChannel = "sms"
    ref: str = ""  # the thread's ref, for the owner's confirmation
    dedup_fields: ClassVar[tuple[str, ...]] = ("request_id",)


class OutboundSent(Event, frozen=True, kw_only=True, tag="outbound.sent"):
    outbox_id: str
    to_number: str
    provider_sid: str
    kind: OutboundKind | Literal["approved_draft"] = "approved_draft"
    draft_id: str | None = None
    request_id: str | None = None
    workflow_enrollment_id: str | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("outbox_id",)


class OutboundFailed(Event, frozen=True, kw_only=True, tag="outbound.failed"):
    outbox_id: str
    to_number: str
    error_code: int | None = None
    error_message: str = ""
    permanent: bool = True
    draft_id: str | None = None
    request_id: str | None = None
    kind: OutboundKind | Literal["approved_draft"] = "approved_draft"
    #: opted_out (refused by the consent gate), provider_error, undelivered, retries_exhausted
    reason: str = ""
    provider_sid: str | None = None
    workflow_enrollment_id: str | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("outbox_id",)


class OutboundStatus(Event, frozen=True, kw_only=True, tag="outbound.status"):
    """A Twilio status callback (queued, sent, delivered, undelivered, failed)."""

    provider_sid: str
    status: str
    error_code: int | None = None
    to_number: str = ""
    dedup_fields: ClassVar[tuple[str, ...]] = ("provider_sid", "status")


# --- contacts --------------------------------------------------------------


class ConsentChange(Event, frozen=True, kw_only=True):
    """A lead's STOP (contact.optout) or START (contact.optin) keyword; never sent itself."""

    number: str
    keyword: str
    message_sid: str = ""
    #: When the lead's keyword SMS reached ingest. Consent changes are ordered by it, not by
    #: when (or how often: DLQ replays, router lag) the event was published.
    received_at: datetime | None = None
    dedup_fields: ClassVar[tuple[str, ...]] = ("id",)


class ContactOptout(ConsentChange, frozen=True, kw_only=True, tag="contact.optout"):
    pass


class ContactOptin(ConsentChange, frozen=True, kw_only=True, tag="contact.optin"):
    pass


class ContactPaused(Event, frozen=True, kw_only=True, tag="contact.paused"):
    """A human paused (paused=True) or resumed (paused=False) automation for a thread."""

    number: str
    paused: bool = True
    actor: str = ""
    reason: str = ""


class ContactTakeover(Event, frozen=True, kw_only=True, tag="contact.takeover"):
    """The router put a thread in HUMAN_TAKEOVER (active) or handed it back to the AI.

    ``until`` is when the AI resumes if no person replies again; ``reason`` on the
    end is "quiet_period", "resume" (RESUME / dashboard / API) or "opt_out".
    """

    number: str
    active: bool = True
    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""
    reason: str = ""


class ContactTagged(Event, frozen=True, kw_only=True, tag="contact.tagged"):
    number: str
    tag_name: str
    added: bool = True


class ContactUpdated(Event, frozen=True, kw_only=True, tag="contact.updated"):
    number: str
    field: str
    value: Any = None


class LeadCreated(Event, frozen=True, kw_only=True, tag="lead.created"):
    """A new lead from the lead webhook (web form, ad platform)."""

    lead_id: str
    phone: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    source: str = ""
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: tuple[str, ...] = ()
    dedup_fields: ClassVar[tuple[str, ...]] = ("lead_id",)


# --- calls -----------------------------------------------------------------

#: Why a call counts as missed: Twilio's DialCallStatus of the forwarded leg
#: (no-answer, busy, failed, canceled), or ``no_forward`` when no forward number is set.
MissedReason = Literal["no-answer", "busy", "failed", "canceled", "no_forward"]


class CallMissed(Event, frozen=True, kw_only=True, tag="call.missed"):
    """A voice call to the business number that nobody answered (ingest, from Twilio's
    dial-status callback). The scheduler's ``call_missed`` trigger texts the caller back."""

    call_sid: str
    from_number: str
    to_number: str = ""
    reason: MissedReason = "no-answer"
    #: When ingest received the callback (the text-back window is measured on it).
    received_at: datetime = msgspec.field(default_factory=utcnow)
    dedup_fields: ClassVar[tuple[str, ...]] = ("call_sid",)


# --- timers ----------------------------------------------------------------

TimerKind = Literal[
    "draft_expiry",
    "workflow_delay",
    "reply_timeout",
    "quiet_hours",
    "no_response",
    "takeover_quiet",  # the router's: hand a HUMAN_TAKEOVER thread back to the AI
    "burst_debounce",  # the drafter's one-draft-per-burst wait (docs/drafter.md)
]


class TimerSet(Event, frozen=True, kw_only=True, tag="timer.set"):
    """Set (or replace) a durable timer held by the scheduler."""

    timer_id: str
    kind: TimerKind
    fire_at: datetime
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    dedup_fields: ClassVar[tuple[str, ...]] = ("timer_id", "fire_at")


class TimerCancel(Event, frozen=True, kw_only=True, tag="timer.cancel"):
    timer_id: str
    dedup_fields: ClassVar[tuple[str, ...]] = ("timer_id",)


class TimerFired(Event, frozen=True, kw_only=True, tag="timer.fired"):
    timer_id: str
    kind: TimerKind
    fire_at: datetime
    fired_at: datetime = msgspec.field(default_factory=utcnow)
    late: bool = False
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    dedup_fields: ClassVar[tuple[str, ...]] = ("timer_id", "fire_at")


AnyEvent = (
    InboundReceived
    | InboundRouted
    | DraftDecided
    | DraftCreated
    | DraftRequested
    | DraftApproved
    | DraftRejected
    | OutboundRequested
    | HumanReply
    | OutboundSent
    | OutboundFailed
    | OutboundStatus
    | ContactOptout
    | ContactOptin
    | ContactPaused
    | ContactTakeover
    | ContactTagged
    | ContactUpdated
    | LeadCreated
    | CallMissed
    | TimerSet
    | TimerCancel
    | TimerFired
)

EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls
    for cls in AnyEvent.__args__
}

_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder()


def decode(data: bytes) -> Event:
    """Decode any event; raises msgspec.DecodeError / ValidationError on malformed input."""
    event: Event = _decoder.decode(data)
    return event


def encode(event: Event) -> bytes:
    return _encoder.encode(event)
