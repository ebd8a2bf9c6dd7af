"""Every SMS the drafter sends the owner, in one place.

The approval prompt itself is libs.owner_protocol.approval_prompt (the DESIGN.md
text, shared with the router's parser); these are the replies around it.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.owner_protocol import SMS_MAX_CHARS, approval_prompt, preview

__all__ = [
    "HELP",
    "already_decided",
    "approval_prompt",
    "burst_prompt",
    "changed_since",
    "confirm_bare",
    "draft_expired",
    "forwarded",
    "llm_failed",
    "needs_review",
    "no_pending",
    "not_shown",
    "not_understood",
    "paused",
    "replaced",
    "resumed",
    "send_refused_opted_out",
    "send_result",
    "too_long",
    "unknown_ref",
    "unknown_thread_ref",
    "waiting_list",
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


def _answer_with(ref: str) -> str:
    return f"Answer from the business number: SEND {ref} <your text>."


def llm_failed(lead: str, body: str, ref: str) -> str:
    quote = preview(body, LEAD_QUOTE_CHARS)
    return (
        f'#{ref} Could not draft a reply for {lead} (AI unavailable). They wrote: "{quote}" '
        f"It is in the manual-intervention queue. {_answer_with(ref)}"
    )


def needs_review(lead: str, body: str, rule: str, ref: str) -> str:
    what = f'"{preview(body, LEAD_QUOTE_CHARS)}"' if body.strip() else "(no text)"
    return f"#{ref} Needs review ({rule}): {lead} wrote {what} No reply was drafted. {_answer_with(ref)}"


# --- human takeover: the owner console (docs/drafter.md, "Human takeover") --------

HELP = (
    "Replyline commands: YES <ref> / NO <ref> / EDIT <ref> <text> decide a draft. "
    "SEND <ref> <text> texts that lead from the business number (you take over the thread: "
    "the AI stops drafting for it). RESUME <ref> hands it back to the AI; PAUSE <ref> stops "
    "all automation. LIST (or ?) shows what waits for you. <ref> is the #number in my messages."
)


def forwarded(ref: str, lead: str, body: str, num_media: int = 0) -> str:
    """A lead message during HUMAN_TAKEOVER: the person answering gets it as it is."""
    what = f'"{preview(body, LEAD_QUOTE_CHARS)}"' if body.strip() else "(no text)"
    media = f" (+{num_media} attachment{'s' if num_media > 1 else ''})" if num_media else ""
    return (
        f"#{ref} {lead} wrote {what}{media} You are answering this thread: SEND {ref} <text> "
        f"to reply, RESUME {ref} to hand it back to the AI."
    )


def unknown_thread_ref(ref: str) -> str:
    return f"There is no #{ref}; nothing was sent. Reply LIST to see the refs waiting for you."


def send_refused_opted_out(lead: str) -> str:
    return f"NOT sent: {lead} has opted out (STOP). Nothing can be sent to them until they text START."


def send_result(ref: str, lead: str, body: str, *, sent: bool, why: str = "") -> str:
    quote = preview(body, 60)
    if sent:
        return f'Sent to {lead} (#{ref}): "{quote}"'
    return f'NOT delivered to {lead} (#{ref}): {why}. Message: "{quote}"'


def paused(ref: str, lead: str) -> str:
    return f"Paused #{ref} ({lead}): nothing automated goes to them. RESUME {ref} to resume."


def resumed(ref: str, lead: str) -> str:
    return f"Resumed #{ref} ({lead}): the AI drafts replies to them again."


def waiting_list(lines: Sequence[tuple[str, str, str, str]], total: int) -> str:
    """LIST: (what, ref, lead, what they wrote), newest first, one line each."""
    if not lines:
        return "Nothing is waiting for you."
    out = [f"{total} waiting (newest first):"]
    for what, ref, lead, body in lines:
        label = "draft" if what == "draft" else "answer"
        out.append(f"#{ref} {label} {lead}: {preview(body, 40) or '(no text)'}")
    if total > len(lines):
        out.append(f"...and {total - len(lines)} more on the dashboard.")
    return "\n".join(out)
#: Per-message quote lengths tried, longest first, until a burst prompt fits one SMS.
_BURST_QUOTE_LIMITS = (200, 120, 80, 50, 30)


def _lead_quote(body: str, limit: int) -> str:
    # The lead's words are untrusted: flattened, cut, and with their double quotes
    # turned into single ones, so nothing they write can pass for the quoted draft.
    return '"' + preview(body, limit).replace('"', "'") + '"'


def burst_prompt(
    ref: str, lead: str, body: str, messages: Sequence[str], replaces: Sequence[str]
) -> str | None:
    """The approval prompt of a draft answering several lead messages or replacing drafts.

    The DESIGN.md prompt with, before the colon, the refs it replaces and what the lead
    wrote (each message quoted, shortened until the whole SMS fits; the draft itself is
    never cut). None when even the shortest form does not fit one SMS. A draft answering
    one message and replacing nothing gets exactly the plain prompt.
    """
    plain = approval_prompt(ref, lead, body)
    if len(messages) <= 1 and not replaces:
        return plain if len(plain) <= SMS_MAX_CHARS else None
    head = f"Draft #{ref} for {lead}:"
    assert plain.startswith(head)
    tail = plain[len(head) :]
    replacing = "replaces " + ", ".join(f"#{r}" for r in replaces) if replaces else ""
    count = f"they wrote {len(messages)} messages" if len(messages) > 1 else "they wrote"
    for limit in _BURST_QUOTE_LIMITS:
        quotes = " / ".join(_lead_quote(m, limit) for m in messages)
        context = "; ".join(p for p in (replacing, f"{count}: {quotes}") if p)
        text = f"Draft #{ref} for {lead} ({context}):{tail}"
        if len(text) <= SMS_MAX_CHARS:
            return text
    context = "; ".join(p for p in (replacing, f"{count}, see the dashboard") if p)
    text = f"Draft #{ref} for {lead} ({context}):{tail}"
    return text if len(text) <= SMS_MAX_CHARS else None


def replaced(ref: str, new_ref: str, new_status: str = "DRAFT_PENDING_APPROVAL") -> str:
    """A decision naming a draft the lead's newer message superseded: nothing is done.

    ``new_ref``/``new_status``: the current version of the replacing draft.
    """
    done = f"draft #{ref} was replaced by #{new_ref} because the lead wrote again; nothing was sent."
    done = done[0].upper() + done[1:]
    if new_status != "DRAFT_PENDING_APPROVAL":
        word = {"APPROVED_TO_SEND": "approved", "REJECTED": "rejected"}.get(new_status, "decided")
        return f"{done} #{new_ref} was already {word}."
    return f"{done} Reply YES {new_ref}, NO {new_ref}, or EDIT {new_ref} <new text> to decide it."
