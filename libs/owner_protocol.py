"""The owner's SMS approval protocol (DESIGN.md, "Owner approval by SMS").

The router parses owner texts with :func:`parse_owner_command`; the drafter
formats prompts with :func:`approval_prompt`. Refs are short numbers
(``#4821``) so they are quick to type on a phone and never mistaken for a word.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

Action = Literal["approve", "reject", "edit", "unclear"]

APPROVE_WORDS = frozenset({"YES", "Y", "APPROVE", "APPROVED", "OK", "OKAY", "SI", "SEND"})
REJECT_WORDS = frozenset({"NO", "N", "REJECT", "REJECTED", "DISCARD"})
EDIT_WORDS = frozenset({"EDIT", "EDITAR"})

_REF = re.compile(r"^#?(\d{2,6})[.,:;!]?$")
# The owner approves exactly what they read: the prompt carries the whole draft
# (drafts are a few sentences; Twilio concatenates up to 1,600 characters).
PREVIEW_CHARS = 1000


class OwnerCommand(msgspec.Struct, frozen=True, kw_only=True):
    action: Action
    ref: str | None = None  # None: a bare reply, valid only when exactly one draft is pending
    text: str | None = None  # edit text, or the raw message when unclear
    notes: str = ""


def _keyword(token: str) -> str:
    # "Sí", "yes!", "YES," all mean the same keyword.
    stripped = unicodedata.normalize("NFKD", token).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z]", "", stripped).upper()


def _ref(token: str) -> str | None:
    match = _REF.match(token)
    return match.group(1) if match else None


def parse_owner_command(text: str) -> OwnerCommand:
    raw = text.strip()
    if not raw:
        return OwnerCommand(action="unclear", text=raw)
    first, _, rest = raw.partition(" ")
    word = _keyword(first)
    rest = rest.strip()
    second, _, after = rest.partition(" ")
    ref = _ref(second) if second else None
    if word in EDIT_WORDS:
        new_text = after.strip() if ref else rest
        if not new_text:
            return OwnerCommand(action="unclear", ref=ref, text=raw)
        return OwnerCommand(action="edit", ref=ref, text=new_text)
    if word in APPROVE_WORDS or word in REJECT_WORDS:
        action: Action = "approve" if word in APPROVE_WORDS else "reject"
        notes = after.strip() if ref else rest
        return OwnerCommand(action=action, ref=ref, notes=notes)
    # "4821 yes" is a common slip: accept the ref first, keyword second.
    if _ref(first) and _keyword(second) in APPROVE_WORDS | REJECT_WORDS:
        action = "approve" if _keyword(second) in APPROVE_WORDS else "reject"
        return OwnerCommand(action=action, ref=_ref(first), notes=after.strip())
    return OwnerCommand(action="unclear", text=raw)


def preview(body: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def approval_prompt(ref: str, lead: str, body: str) -> str:
    """The exact owner prompt of DESIGN.md."""
    return f'Draft #{ref} for {lead}: "{preview(body)}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'
