"""The lead webhook payload (web forms, ad platforms) -> lead.created.

Accepted as JSON or as a urlencoded form, since form tools post either. Known keys
map to LeadCreated's fields; any other top-level key is kept as a custom field, so
a form's extra questions reach the workflows (``{{budget}}``) without configuration.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import phonenumbers
from multidict import MultiDictProxy

from libs.events import LeadCreated, thread_of
from services.ingest.twilio_payload import PayloadError, raw_form

_NAME_KEYS = {
    "first_name": ("first_name", "firstName", "first"),
    "last_name": ("last_name", "lastName", "last"),
    "email": ("email", "email_address"),
    "source": ("source", "utm_source"),
}
_PHONE_KEYS = ("phone", "phone_number", "phoneNumber", "mobile")
_ID_KEYS = ("lead_id", "id")
_MAX_TEXT = 500


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 for a number as people type it ("(555) 123-4567", "+34 612 34 56 78")."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise PayloadError(f"phone {raw!r} is not a phone number: {exc}") from None
    # "possible" (right length for the country) rather than "valid": valid excludes the
    # fictional 555 numbers that documentation and tests use.
    if not phonenumbers.is_possible_number(number):
        raise PayloadError(f"phone {raw!r} is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def decode_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body (the lead webhook's and the API's); anything else is a PayloadError."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    return data


def form_to_dict(form: MultiDictProxy[str]) -> dict[str, Any]:
    data: dict[str, Any] = dict(raw_form(form))
    tags = data.get("tags")
    if isinstance(tags, str):
        data["tags"] = [t for t in (part.strip() for part in tags.split(",")) if t]
    return data


def _text(data: dict[str, Any], keys: tuple[str, ...], what: str) -> str:
    for key in keys:
        if key in data and data[key] is not None:
            value = data[key]
            if not isinstance(value, str | int | float):
                raise PayloadError(f"{what} must be a string")
            text = str(value).strip()
            if len(text) > _MAX_TEXT:
                raise PayloadError(f"{what} is longer than {_MAX_TEXT} characters")
            return text
    return ""


def parse_lead(
    data: dict[str, Any], *, default_region: str, idempotency_key: str | None = None
) -> LeadCreated:
    phone_raw = _text(data, _PHONE_KEYS, "phone")
    if not phone_raw:
        raise PayloadError("phone is required")
    phone = normalize_phone(phone_raw, default_region)
    tags = data.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise PayloadError("tags must be a list of non-empty strings")
    fields = data.get("fields", data.get("custom_fields", {}))
    if not isinstance(fields, dict):
        raise PayloadError("fields must be an object")
    known = {"tags", "fields", "custom_fields", *_PHONE_KEYS, *_ID_KEYS}
    for keys in _NAME_KEYS.values():
        known.update(keys)
    extra = {k: v for k, v in data.items() if k not in known}
    # A caller-supplied id (or Idempotency-Key) makes a retried webhook one lead, through
    # the stream's duplicate window; without one every POST is a new lead.
    lead_id = _text(data, _ID_KEYS, "lead_id") or idempotency_key or str(uuid.uuid4())
    if len(lead_id) > 128 or not lead_id.isprintable():
        raise PayloadError("lead_id must be at most 128 printable characters")
    return LeadCreated(
        thread=thread_of(phone),
        lead_id=lead_id,
        phone=phone,
        first_name=_text(data, _NAME_KEYS["first_name"], "first_name"),
        last_name=_text(data, _NAME_KEYS["last_name"], "last_name"),
        email=_text(data, _NAME_KEYS["email"], "email"),
        source=_text(data, _NAME_KEYS["source"], "source"),
        fields={**extra, **fields},
        tags=tuple(dict.fromkeys(t.strip() for t in tags)),
    )
