"""Every SMS the drafter sends the owner, in one place.

The approval prompt itself is libs.owner_protocol.approval_prompt (the DESIGN.md
text, shared with the router's parser); these are the replies around it.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.owner_protocol import SMS_MAX_CHARS, approval_prompt, preview

__all__ = [
    "already_decided",
    "approval_prompt",
    "changed_since",
    "confirm_bare",
    "draft_expired",
    "llm_failed",
    "needs_review",
    "no_pending",
    "not_shown",
    "not_understood",
    "too_long",
    "unknown_ref",
    "which_draft",
]

#: Quotes of what a lead wrote in alerts (never of a draft: prompts carry the whole text).
LEAD_QUOTE_CHARS = 1000

HOW_TO_REPLY = "Reply YES <ref>, NO <ref>, or EDIT <ref> <new text>."


def _listing(pending: Sequence[tuple[str, str]], total: int) -> str:
    shown = ", ".join(f"#{ref} for {lead}" for ref, lead in pending)
    more = f" and {total - len(pending)} more" if total > len(pending) else ""
    return f"{shown}{more}"


def which_draft(pending: Sequence[tuple[str, str]], total: int) -> str:
    """A bare YES/NO/EDIT while several drafts wait: ask which one, never guess."""
    return f"{total} drafts are waiting: {_listing(pending, total)}. Which one? {HOW_TO_REPLY}"


def not_understood(
    text: str, pending: Sequence[tuple[str, str]], total: int, reason: str = ""
) -> str:
    waiting = f" Waiting: {_listing(pending, total)}." if total else " No drafts are waiting."
    why = f" ({reason}; nothing was changed)" if reason else ""
    return f'Sorry, I did not understand "{preview(text, 60)}"{why}.{waiting} {HOW_TO_REPLY}'


def too_long(ref: str, lead: str, length: int, limit: int) -> str:
    """Instead of a prompt, for a version that cannot be shown whole in one SMS."""
    return (
        f"Draft #{ref} for {lead} is {length} characters, too long to show whole by SMS "
        f"(limit {limit}). It was NOT sent: review it on the dashboard."
    )


def not_shown(ref: str) -> str:
    return (
        f"Draft #{ref} was too long to show you whole by SMS, so it cannot be approved by "
        "SMS; nothing was sent. Review it on the dashboard."
    )


def _with_prompt(lead_in: str, prompt: str, fallback: str) -> str:
    text = f"{lead_in} {prompt}"
    return text if len(text) <= SMS_MAX_CHARS else f"{lead_in} {fallback}"


def changed_since(old_ref: str, prompt: str, fallback: str) -> str:
    """YES/NO/EDIT naming a version that a newer one replaced: show the new one, ask again."""
    return _with_prompt(
        f"Draft #{old_ref} was changed before your reply; nothing was done. Now:", prompt, fallback
    )


def confirm_bare(prompt: str, fallback: str) -> str:
    """A bare reply while the only pending version is too new for the owner to have read."""
    return _with_prompt(
        "Your reply named no draft and this one arrived just now; nothing was done.",
        prompt,
        fallback,
    )


def no_pending() -> str:
    return "No drafts are waiting for approval; nothing was changed."


def unknown_ref(ref: str, pending: Sequence[tuple[str, str]], total: int) -> str:
    waiting = f" Waiting: {_listing(pending, total)}." if total else " No drafts are waiting."
    return f"There is no draft #{ref}; nothing was changed.{waiting}"


def already_decided(ref: str, status: str) -> str:
    word = {"APPROVED_TO_SEND": "approved", "REJECTED": "rejected"}.get(status, "decided")
    return f"Draft #{ref} was already {word}; nothing was changed."


def draft_expired(ref: str, lead: str, hours: float) -> str:
    return (
        f"Draft expired: #{ref} for {lead} was not decided within {hours:g}h and was NOT sent. "
        f"Reply YES {ref}, NO {ref}, or EDIT {ref} <new text> to decide now."
    )


def llm_failed(lead: str, body: str) -> str:
    quote = preview(body, LEAD_QUOTE_CHARS)
    return (
        f'Could not draft a reply for {lead} (AI unavailable). They wrote: "{quote}" '
        "It is in the manual-intervention queue; please answer them yourself."
    )


def needs_review(lead: str, body: str, rule: str) -> str:
    what = f'"{preview(body, LEAD_QUOTE_CHARS)}"' if body.strip() else "(no text)"
    return (
        f"Needs review ({rule}): {lead} wrote {what} No reply was drafted; "
        "please answer them yourself."
    )
