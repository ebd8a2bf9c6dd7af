"""Every SMS the drafter sends the owner, in one place.

The approval prompt itself is libs.owner_protocol.approval_prompt (the DESIGN.md
text, shared with the router's parser); these are the replies around it.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.owner_protocol import approval_prompt, preview

__all__ = [
    "already_decided",
    "approval_prompt",
    "draft_expired",
    "llm_failed",
    "needs_review",
    "no_pending",
    "not_understood",
    "unknown_ref",
    "which_draft",
]

HOW_TO_REPLY = "Reply YES <ref>, NO <ref>, or EDIT <ref> <new text>."


def _listing(pending: Sequence[tuple[str, str]], total: int) -> str:
    shown = ", ".join(f"#{ref} for {lead}" for ref, lead in pending)
    more = f" and {total - len(pending)} more" if total > len(pending) else ""
    return f"{shown}{more}"


def which_draft(pending: Sequence[tuple[str, str]], total: int) -> str:
    """A bare YES/NO/EDIT while several drafts wait: ask which one, never guess."""
    return f"{total} drafts are waiting: {_listing(pending, total)}. Which one? {HOW_TO_REPLY}"


def not_understood(text: str, pending: Sequence[tuple[str, str]], total: int) -> str:
    waiting = f" Waiting: {_listing(pending, total)}." if total else " No drafts are waiting."
    return f'Sorry, I did not understand "{preview(text, 60)}".{waiting} {HOW_TO_REPLY}'


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
    return (
        f'Could not draft a reply for {lead} (AI unavailable). They wrote: "{preview(body)}" '
        "It is in the manual-intervention queue; please answer them yourself."
    )


def needs_review(lead: str, body: str, rule: str) -> str:
    what = f'"{preview(body)}"' if body.strip() else "(no text)"
    return (
        f"Needs review ({rule}): {lead} wrote {what} No reply was drafted; "
        "please answer them yourself."
    )
