"""Parsing Twilio's form-encoded webhooks into typed structs.

Twilio posts ``application/x-www-form-urlencoded`` bodies and adds fields without
notice, so the structs name only what Replyline uses and the raw form is kept
alongside. Everything here is pure: bad input raises :class:`PayloadError`, which
the HTTP layer turns into a 400.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar
from urllib.parse import unquote

import msgspec
from multidict import MultiDict, MultiDictProxy

from libs.events import Media

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# Exact SID formats, as Twilio's OpenAPI description of the 2010 API states them
# (testsupport/fakes/reference/twilio_api_v2010.json: api.v2010.account.message). Exactness is
# a security property, not tidiness: the signature covers the fields' names and values
# concatenated without separators, so a captured webhook re-split as
# ``MessageSid=SM…NumMedia0`` (dropping ``NumMedia=0``) keeps a valid signature. A
# fixed-length hex SID leaves no room to move text into it, so a replay is always the
# same MessageSid, which ingest records once.
MESSAGE_SID_PATTERN = r"^(SM|MM)[0-9a-fA-F]{32}$"
ACCOUNT_SID_PATTERN = r"^AC[0-9a-fA-F]{32}$"
MESSAGING_SERVICE_SID_PATTERN = r"^MG[0-9a-fA-F]{32}$"
CALL_SID_PATTERN = r"^CA[0-9a-fA-F]{32}$"
MessageSid = Annotated[str, msgspec.Meta(pattern=MESSAGE_SID_PATTERN)]
CallSid = Annotated[str, msgspec.Meta(pattern=CALL_SID_PATTERN)]
AccountSid = Annotated[str, msgspec.Meta(pattern=ACCOUNT_SID_PATTERN)]
MessagingServiceSid = Annotated[str, msgspec.Meta(pattern=MESSAGING_SERVICE_SID_PATTERN)]
#: Twilio's message status enum (message_enum_status in the same spec).
MessageStatus = Literal[
    "queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving",
    "received", "accepted", "scheduled", "read", "partially_delivered", "canceled",
]  # fmt: skip
#: Fields that name the message or the account: each may appear once, and the legacy
#: aliases must agree with MessageSid.
_SID_FIELDS = ("MessageSid", "SmsMessageSid", "SmsSid", "AccountSid", "MessagingServiceSid")
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Twilio delivers at most 10 media items per MMS.
MediaCount = Annotated[int, msgspec.Meta(ge=0, le=10)]
SegmentCount = Annotated[int, msgspec.Meta(ge=0, le=100)]

RawForm = dict[str, str | list[str]]
T = TypeVar("T")


class PayloadError(ValueError):
    """The request body is not a usable Twilio webhook (answered with 400)."""


class InboundSms(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of Twilio's inbound-message webhook that Replyline uses."""

    message_sid: MessageSid = msgspec.field(name="MessageSid")
    from_number: NonEmpty = msgspec.field(name="From")
    to_number: str = msgspec.field(default="", name="To")
    body: str = msgspec.field(default="", name="Body")
    # "" only when the field is absent; a present one must have the exact format.
    account_sid: AccountSid = msgspec.field(default="", name="AccountSid")
    messaging_service_sid: MessagingServiceSid = msgspec.field(default="", name="MessagingServiceSid")
    num_media: MediaCount = msgspec.field(default=0, name="NumMedia")
    num_segments: SegmentCount = msgspec.field(default=1, name="NumSegments")
    opt_out_type: str = msgspec.field(default="", name="OptOutType")
    media: tuple[Media, ...] = ()


class StatusCallback(msgspec.Struct, frozen=True, kw_only=True):
    """Twilio's message status callback (sent to the StatusCallback URL of an outbound message)."""

    message_sid: MessageSid = msgspec.field(name="MessageSid")
    message_status: MessageStatus = msgspec.field(name="MessageStatus")
    to_number: str = msgspec.field(default="", name="To")
    from_number: str = msgspec.field(default="", name="From")
    account_sid: AccountSid = msgspec.field(default="", name="AccountSid")
    # Absent on success; Twilio sends the numeric code (e.g. "30007") on failure.
    error_code: int | None = msgspec.field(default=None, name="ErrorCode")


#: Twilio's DialCallStatus values (the outcome of a <Dial>'s forwarded leg).
DialCallStatus = Literal["completed", "answered", "busy", "no-answer", "failed", "canceled"]
#: Fields that name a call or the account: each may appear once.
_CALL_SID_FIELDS = ("CallSid", "AccountSid", "DialCallSid", "ParentCallSid")


class VoiceCall(msgspec.Struct, frozen=True, kw_only=True):
    """The fields of Twilio's incoming-call webhook (the number's voice URL) Replyline uses."""

    call_sid: CallSid = msgspec.field(name="CallSid")
    account_sid: AccountSid = msgspec.field(default="", name="AccountSid")
    # Anonymous callers arrive as "Anonymous", "+266696687" or empty: only an E.164
    # caller gets a text-back (services/ingest/voice.py decides).
    from_number: str = msgspec.field(default="", name="From")
    to_number: str = msgspec.field(default="", name="To")
    call_status: str = msgspec.field(default="", name="CallStatus")
    direction: str = msgspec.field(default="", name="Direction")


class DialStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The callback Twilio posts to a <Dial action> URL once the forwarded leg ends."""

    call_sid: CallSid = msgspec.field(name="CallSid")
    dial_call_status: DialCallStatus = msgspec.field(name="DialCallStatus")
    account_sid: AccountSid = msgspec.field(default="", name="AccountSid")
    from_number: str = msgspec.field(default="", name="From")
    to_number: str = msgspec.field(default="", name="To")
    dial_call_sid: CallSid = msgspec.field(default="", name="DialCallSid")


def parse_form(body: bytes) -> MultiDictProxy[str]:
    """Decode a urlencoded body strictly: invalid UTF-8, raw or percent-encoded, is an error.

    aiohttp's ``request.post()`` raises UnicodeDecodeError (a 500) on such input, hence this.
    """
    try:
        text = body.decode("utf-8")
        pairs = _form_pairs(text)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    # A NUL is either in the text or spelled %00: the pairs are searched only then.
    if ("\x00" in text or "%00" in text) and any("\x00" in k or "\x00" in v for k, v in pairs):
        # Postgres text cannot hold NUL; reject it here rather than fail at insert time.
        raise PayloadError("body contains a NUL character")
    return MultiDictProxy(MultiDict(pairs))


def _form_pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, errors="strict")``, without its generality.

    Every webhook goes through this, and most fields need neither '+' nor '%' decoded
    (tests/ingest/test_ingest_payload.py holds it to parse_qsl's answer).
    """
    pairs = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="strict")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value, errors="strict")
        pairs.append((name, value))
    return pairs


def raw_form(form: MultiDictProxy[str]) -> RawForm:
    """The whole form as JSON-able data: one string per field, a list when a field repeats."""
    raw: RawForm = {}
    for key in form:
        if key in raw:
            continue
        values = form.getall(key)
        raw[key] = values[0] if len(values) == 1 else list(values)
    return raw


def _first_values(form: MultiDictProxy[str]) -> dict[str, str]:
    return {key: form[key] for key in form}


def _convert(fields: dict[str, str], cls: type[T]) -> T:
    try:
        # strict=False lets msgspec turn "3" into 3 for the numeric fields.
        return msgspec.convert(fields, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise PayloadError(str(exc)) from exc


def _check_once(form: MultiDictProxy[str], names: tuple[str, ...]) -> None:
    for name in names:
        if len(form.getall(name, ())) > 1:
            raise PayloadError(f"{name} appears more than once")


def _check_sid_fields(form: MultiDictProxy[str], *, sid_field: str) -> None:
    """Each SID field at most once, and the legacy aliases equal to ``sid_field``'s value.

    Twilio sends ``SmsMessageSid`` and ``SmsSid`` with the same value as ``MessageSid``;
    a form where they differ was not written by Twilio (or was re-split after signing).
    """
    _check_once(form, _SID_FIELDS)
    sid = form.get(sid_field)
    for alias in ("MessageSid", "SmsMessageSid", "SmsSid"):
        value = form.get(alias)
        if value is not None and sid is not None and value != sid:
            raise PayloadError(f"{alias} does not match {sid_field}")


def parse_inbound(form: MultiDictProxy[str]) -> InboundSms:
    """Validate an inbound-message webhook and collect its media (MediaUrlN/MediaContentTypeN)."""
    _check_sid_fields(form, sid_field="MessageSid")
    sms = _convert(_first_values(form), InboundSms)
    media: list[Media] = []
    for index in range(sms.num_media):
        url = form.get(f"MediaUrl{index}", "")
        if not url:
            raise PayloadError(f"NumMedia is {sms.num_media} but MediaUrl{index} is missing")
        media.append(Media(url=url, content_type=form.get(f"MediaContentType{index}", "")))
    return msgspec.structs.replace(sms, media=tuple(media))


def parse_status(form: MultiDictProxy[str]) -> StatusCallback:
    _check_sid_fields(form, sid_field="MessageSid" if "MessageSid" in form else "SmsSid")
    fields = _first_values(form)
    # Older callbacks carry SmsStatus/SmsSid only; an empty ErrorCode means "no error".
    fields.setdefault("MessageStatus", fields.get("SmsStatus", ""))
    fields.setdefault("MessageSid", fields.get("SmsSid", ""))
    if fields.get("ErrorCode", None) == "":
        del fields["ErrorCode"]
    return _convert(fields, StatusCallback)


def _check_call_sid_fields(form: MultiDictProxy[str]) -> None:
    # Same reason as for messages: a SID field repeated is a re-split form, not Twilio's.
    _check_once(form, _CALL_SID_FIELDS)


def parse_voice(form: MultiDictProxy[str]) -> VoiceCall:
    """Validate Twilio's incoming-call webhook."""
    _check_call_sid_fields(form)
    return _convert(_first_values(form), VoiceCall)


def parse_dial_status(form: MultiDictProxy[str]) -> DialStatus:
    """Validate the <Dial action> callback (DialCallStatus tells whether it was answered)."""
    _check_call_sid_fields(form)
    fields = _first_values(form)
    if fields.get("DialCallSid", None) == "":
        del fields["DialCallSid"]  # no forwarded leg was created (e.g. failed at once)
    return _convert(fields, DialStatus)
