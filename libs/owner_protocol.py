"""The owner's SMS approval protocol (DESIGN.md, "Owner approval by SMS").

The router parses owner texts with :func:`parse_owner_command`; the drafter
formats prompts with :func:`approval_prompt`. Refs are short numbers
(``#4821``) so they are quick to type on a phone and never mistaken for a word.
Every draft *version* has its own ref (an edit gets a new one), so a reply
names exactly the text its prompt showed.

Parsing is strict on purpose: a reply either reads as one unambiguous command,
or it is :class:`Unclear` and the owner gets a clarifying SMS. In particular a
reply that contains any digit that is not a cleanly separated ref (``YES1000``,
``YES 1,000``, ``YES 1000 1001``) is never downgraded to a bare reply, because a
bare YES approves whichever single draft is pending.

The grammar is one table, :data:`KEYWORDS`: a keyword maps to a :class:`Spec`
saying what it does and which arguments it takes. A new command is one entry.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

#: What a command does. The router forwards it as ``DraftDecided.action``.
#: approve/reject/edit decide a draft; the rest is the owner console (human takeover).
Kind = Literal["approve", "reject", "edit", "send", "pause", "resume", "list", "help"]
Action = Literal[
    "approve", "reject", "edit", "send", "pause", "resume", "list", "help", "unclear"
]


class Spec(msgspec.Struct, frozen=True):
    """How one keyword is read.

    ``ref``: "optional" (a bare reply is allowed), "required" or "none".
    ``text``: "notes" (optional free words, no digits: they could be a mistyped ref),
    "required" (free text that may contain anything, e.g. an edit), or "none".
    """

    kind: Kind
    ref: Literal["optional", "required", "none"] = "optional"
    text: Literal["notes", "required", "none"] = "notes"


_APPROVE = Spec("approve")
_REJECT = Spec("reject")
_EDIT = Spec("edit", text="required")
#: "SEND <ref> <text>": free text to the lead of a thread or draft ref. The ref is
#: required (never "the only pending one": a free text sent to the wrong lead cannot
#: be taken back), and a second token that starts like a number but is not a clean
#: ref ("SEND #10o6 hi", "SEND 1,006 hi") is unclear, never read as text.
_SEND = Spec("send", ref="required", text="required")
_PAUSE = Spec("pause", ref="required")
_RESUME = Spec("resume", ref="required")
_LIST = Spec("list", ref="none", text="none")
_HELP = Spec("help", ref="none", text="notes")

#: The whole grammar. Keys are upper-case ASCII (accents are dropped: "Sí" -> "SI").
#: A lone "?" is LIST (see :func:`parse_owner_command`).
KEYWORDS: dict[str, Spec] = {
    "YES": _APPROVE,
    "Y": _APPROVE,
    "APPROVE": _APPROVE,
    "APPROVED": _APPROVE,
    "OK": _APPROVE,
    "OKAY": _APPROVE,
    "SI": _APPROVE,
    "NO": _REJECT,
    "N": _REJECT,
    "REJECT": _REJECT,
    "REJECTED": _REJECT,
    "DISCARD": _REJECT,
    "EDIT": _EDIT,
    "EDITAR": _EDIT,
    "SEND": _SEND,
    "REPLY": _SEND,
    "PAUSE": _PAUSE,
    "RESUME": _RESUME,
    "LIST": _LIST,
    "HELP": _HELP,
    "COMMANDS": _HELP,
}

# Refs come from draft_ref_seq (1000..999999): 4 to 6 ASCII digits, an optional
# leading '#', and one trailing punctuation mark ("Yes, 1000." / "EDIT #1000: ...").
_REF = re.compile(r"#?([0-9]{4,6})[.,:;!]?")
_KEYWORD = re.compile(r"([^\W\d_]+)[.,:;!]*")  # letters only, then trailing punctuation
_TOKEN = re.compile(r"\S+")

#: Twilio's limit for one (concatenated) message body: an owner prompt must fit in it whole.
SMS_MAX_CHARS = 1600


class Command(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    ref: str | None = None  # None: a bare reply, valid only when exactly one draft is pending
    text: str | None = None  # the new text of an edit, the message of a SEND
    notes: str = ""


class Unclear(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    text: str  # the raw message


Parsed = Command | Unclear


def _has_digit(text: str) -> bool:
    return any(ch.isnumeric() for ch in text)


def _keyword(token: str) -> str | None:
    match = _KEYWORD.fullmatch(token)
    if match is None:
        return None
    ascii_word = unicodedata.normalize("NFKD", match.group(1)).encode("ascii", "ignore").decode()
    return ascii_word.upper()


def _ref(token: str) -> str | None:
    match = _REF.fullmatch(token)
    return match.group(1) if match else None


def parse_owner_command(text: str) -> Parsed:
    # NFKC folds full-width letters and digits (U+FF39 "Y", U+FF11 "1", ...) to ASCII.
    raw = unicodedata.normalize("NFKC", text).strip()
    tokens = list(_TOKEN.finditer(raw))
    if not tokens:
        return Unclear(reason="empty message", text=raw)
    if raw == "?":
        return Command(kind="list")
    first = tokens[0].group()
    word = _keyword(first)
    ref_first = None
    if word is None and (ref_first := _ref(first)) is not None and len(tokens) >= 2:
        # "1000 YES" is a common slip: a clean ref, then an approve/reject keyword.
        word = _keyword(tokens[1].group())
        spec = KEYWORDS.get(word or "")
        if spec is None or spec.text != "notes" or spec.ref == "none":
            return Unclear(reason="a number where a command word was expected", text=raw)
        return _finish(raw, spec, ref_first, raw[tokens[1].end() :])
    if word is None:
        if _has_digit(first):
            return Unclear(reason="a number is not separated from the command word", text=raw)
        return Unclear(reason="unknown command", text=raw)
    spec = KEYWORDS.get(word)
    if spec is None:
        return Unclear(reason="unknown command", text=raw)
    rest = raw[tokens[0].end() :]
    ref: str | None = None
    if len(tokens) >= 2 and spec.ref != "none":
        ref = _ref(tokens[1].group())
        if ref is not None:
            rest = raw[tokens[1].end() :]
        elif _looks_like_ref(tokens[1].group(), spec):
            return Unclear(reason="a number that is not a draft ref", text=raw)
    if ref is None and spec.ref == "required":
        return Unclear(reason=f"{word} needs a ref (the #number in my messages)", text=raw)
    return _finish(raw, spec, ref, rest)


def _looks_like_ref(token: str, spec: Spec) -> bool:
    """A second token that is not a clean ref but might be meant as one.

    For free text (an edit) only a token that starts like a ref counts ("#1,000",
    "1000new"), so "EDIT $129 flat" stays a bare edit; elsewhere any digit does.
    """
    if spec.text == "required":
        return token[:1] == "#" or token[:1].isnumeric()
    return _has_digit(token)


def _finish(raw: str, spec: Spec, ref: str | None, rest: str) -> Parsed:
    rest = rest.strip()
    if spec.text == "required":
        if not rest:
            return Unclear(reason="the command needs text", text=raw)
        return Command(kind=spec.kind, ref=ref, text=rest)
    if spec.text == "none" and rest:
        return Unclear(reason="unexpected words after the command", text=raw)
    if _has_digit(rest):
        # "YES 1000 1001", "YES 1000 at 5pm", "NO 1,000": never guess which draft.
        return Unclear(reason="more numbers than one draft ref", text=raw)
    return Command(kind=spec.kind, ref=ref, notes=rest)


def decision_of(parsed: Parsed) -> tuple[Action, str | None, str | None, str]:
    """``(action, ref, text, notes)`` for the ``draft.decided`` event of a parsed reply."""
    if isinstance(parsed, Unclear):
        return "unclear", None, parsed.text, parsed.reason
    return parsed.kind, parsed.ref, parsed.text, parsed.notes


def preview(body: str, limit: int) -> str:
    """A short quote of someone else's text (never of a draft the owner approves)."""
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def approval_prompt(ref: str, lead: str, body: str) -> str:
    """The exact owner prompt of DESIGN.md, with the whole draft verbatim.

    The owner approves exactly what they read, so the draft is never shortened here;
    a draft whose prompt would not fit one SMS is not prompted (see :func:`fits_sms`).
    """
    return f'Draft #{ref} for {lead}: "{body}" Reply YES {ref}, NO {ref}, or EDIT {ref} <new text>.'


def fits_sms(ref: str, lead: str, body: str) -> bool:
    return len(approval_prompt(ref, lead, body)) <= SMS_MAX_CHARS
