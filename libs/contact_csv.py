"""Reading a contacts CSV (leads.csv) row by row: columns, normalisation, validation.

Shared by ``replyline contacts import`` and ingest's ``POST /api/contacts/import``; the
scheduler (which owns ``contacts``) stages and commits the rows (services/scheduler/
contact_import.py). The file is streamed: nothing here keeps more than one row.

Columns (header names are case-insensitive, spaces and dashes count as ``_``):

* ``phone`` (or ``phone_number``, ``mobile``, ``number``): required; normalised to E.164
  with ``phonenumbers`` (numbers without a ``+`` are read in the default region);
* ``first_name`` / ``last_name`` (or ``first`` / ``last``), ``name`` (split at the first
  space when first/last are absent), ``email``;
* ``tags``: separated by ``;``, ``|`` or ``,``;
* consent: ``opted_out`` (yes/true/1/y/x = opted out) or ``consent`` (no/false/0/opted_out/
  opt-out/unsubscribed/stop = opted out); anything else in these columns is an error, so a
  typo never turns an opt-out into consent;
* every other column is a custom field (empty cells are skipped).

Every lead-controlled string is untrusted: lengths are capped, and an invalid row is
reported with its line number and reason instead of being imported.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import phonenumbers

MAX_LEN = 200
MAX_FIELDS = 50
MAX_TAGS = 30
PHONE_COLUMNS = ("phone", "phone_number", "mobile", "mobile_phone", "number", "cell")
_ALIASES = {"first": "first_name", "firstname": "first_name", "last": "last_name", "lastname": "last_name",
            "surname": "last_name", "e_mail": "email", "email_address": "email", "tag": "tags",
            "optout": "opted_out", "opted_out": "opted_out", "unsubscribed": "opted_out"}  # fmt: skip
_YES = {"yes", "y", "true", "1", "x", "opted_out", "opt-out", "optout", "stop", "unsubscribed"}
_NO = {"", "no", "n", "false", "0"}
_CONSENT_NO = {"no", "n", "false", "0", "opted_out", "opt-out", "optout", "unsubscribed", "stop", "revoked"}
_CONSENT_YES = {"", "yes", "y", "true", "1", "opted_in", "opt-in", "optin", "granted", "subscribed"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TAG_SPLIT = re.compile(r"[;|,]")
_RESERVED = {"thread", "tags", "fields", "paused", "last_sms_reply", "created_at", "updated_at"}


@dataclass(frozen=True)
class ContactRow:
    line: int
    phone: str  # E.164
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    tags: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    opted_out: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The row as one JSON object of the import spool (tags become a JSON array)."""
        return asdict(self)


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


class HeaderError(ValueError):
    """The header row itself is unusable (no phone column, duplicate columns)."""


def _column(name: str) -> str:
    key = re.sub(r"[\s\-]+", "_", name.strip().lower().lstrip("\ufeff"))
    return _ALIASES.get(key, key)


def normalise_phone(raw: str, region: str) -> str:
    """E.164 or ValueError with a reason a person can act on."""
    text = raw.strip()
    if not text:
        raise ValueError("phone is empty")
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {text[:40]!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"phone {text[:40]!r} is not a valid number for region {region}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def read_rows(lines: Iterable[str], region: str) -> Iterator[ContactRow | RowError]:
    """One ContactRow or RowError per data row, in file order (line = the row's first line)."""
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise HeaderError("the file is empty (no header row)") from None
    except csv.Error as exc:
        raise HeaderError(f"line 1: {exc}") from None
    columns = [_column(h) for h in header]
    seen = [c for c in columns if c]
    if len(seen) != len(set(seen)):
        dupes = sorted({c for c in seen if seen.count(c) > 1})
        raise HeaderError(f"line 1: duplicate columns {', '.join(dupes)}")
    phone_col = next((c for c in PHONE_COLUMNS if c in columns), None)
    if phone_col is None:
        raise HeaderError(f"line 1: no phone column (one of {', '.join(PHONE_COLUMNS)})")
    bad = [c for c in columns if c and c not in _KNOWN and not _FIELD.match(c)]
    if bad:
        raise HeaderError(f"line 1: column names must be letters, digits and _: {', '.join(bad[:5])}")
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(line, f"not valid CSV: {exc}")
            return
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # blank lines are not rows
        if len(cells) > len(columns):
            yield RowError(start, f"{len(cells)} cells but the header has {len(columns)} columns")
            continue
        values = {c: v.strip() for c, v in zip(columns, cells, strict=False) if c}
        try:
            yield _row(start, values, phone_col, region)
        except ValueError as exc:
            yield RowError(start, str(exc))


_KNOWN = {*PHONE_COLUMNS, "first_name", "last_name", "name", "email", "tags", "opted_out", "consent"}


def _row(line: int, values: dict[str, str], phone_col: str, region: str) -> ContactRow:
    for column, value in values.items():
        if len(value) > MAX_LEN:
            raise ValueError(f"{column} is longer than {MAX_LEN} characters")
    phone = normalise_phone(values.get(phone_col, ""), region)
    first, last = values.get("first_name", ""), values.get("last_name", "")
    if not first and not last and values.get("name"):
        first, _, last = values["name"].partition(" ")
    email = values.get("email", "")
    if email and not _EMAIL.match(email):
        raise ValueError(f"email {email[:40]!r} is not an email address")
    split = _TAG_SPLIT.split(values.get("tags", ""))
    tags = tuple(dict.fromkeys(t.strip().lower() for t in split if t.strip()))
    if len(tags) > MAX_TAGS:
        raise ValueError(f"more than {MAX_TAGS} tags")
    opted_out = _consent(values)
    fields = {
        c: v for c, v in values.items() if c not in _KNOWN and c not in _RESERVED and v != ""
    }
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"more than {MAX_FIELDS} custom fields")
    return ContactRow(line, phone, first.strip(), last.strip(), email.lower(), tags, fields, opted_out)


def _consent(values: dict[str, str]) -> bool:
    opted_out = False
    if "opted_out" in values:
        raw = values["opted_out"].lower()
        if raw not in _YES and raw not in _NO:
            raise ValueError(f"opted_out {values['opted_out'][:20]!r} is not yes/no")
        opted_out = raw in _YES
    if "consent" in values:
        raw = values["consent"].lower()
        if raw not in _CONSENT_NO and raw not in _CONSENT_YES:
            raise ValueError(f"consent {values['consent'][:20]!r} is not yes/no/opted_out")
        opted_out = opted_out or raw in _CONSENT_NO
    return opted_out
