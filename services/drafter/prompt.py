"""What the drafter asks the model, and the template reply when there is no model.

The system message carries the business profile in the lead's language; the thread's
recent history follows as user/assistant turns so the model sees the conversation as a
conversation, and the new lead message is the last user turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from services.drafter.profile import Language, Profile

_LANGUAGE_NAMES = {"en": "English", "es": "Spanish"}


class HistoryItem(msgspec.Struct, frozen=True, kw_only=True):
    """One earlier message of the thread: from the lead ("lead") or sent by us ("business")."""

    author: Literal["lead", "business"]
    body: str
    at: datetime | None = None


def language_of(code: str | None) -> Language:
    """The profile language for a detector code ("es", "ES", "es-MX"); English otherwise."""
    short = (code or "").strip().lower()[:2]
    return "es" if short == "es" else "en"


def system_prompt(profile: Profile, language: Language, intent: str | None) -> str:
    lines = [
        f"You write SMS replies on behalf of {profile.name}, a small business, to a new lead.",
        f"Reply in {_LANGUAGE_NAMES[language]}. Tone: {profile.tone}.",
        f"Keep the reply under {profile.max_reply_chars} characters, plain text, no links "
        "unless given below, no placeholders.",
        "Only state facts listed here; never invent prices, availability or promises. If "
        "you do not know, say the team will follow up.",
        "A person reviews your draft before it is sent; write only the reply text.",
        "",
        f"Business: {profile.name}",
        f"Hours: {profile.hours.get(language)}",
    ]
    if profile.phone:
        lines.append(f"Phone: {profile.phone}")
    if profile.services:
        lines.append("Services and prices:")
        for service in profile.services:
            entry = f"- {service.name.get(language)}"
            price = service.price_text(language)
            if price:
                entry += f": {price}"
            if service.description is not None:
                entry += f" ({service.description.get(language)})"
            lines.append(entry)
    if profile.facts is not None:
        lines.append("Other facts:")
        facts = profile.facts.get(language).splitlines()
        lines.extend(f"- {fact.strip()}" for fact in facts if fact.strip())
    sign_off = profile.sign_off.get(language)
    if sign_off:
        lines.append(f'End the reply with the sign-off "{sign_off}".')
    if intent:
        lines.append(f"The lead's message was classified as: {intent}.")
    return "\n".join(lines)


def build_messages(
    profile: Profile,
    *,
    language: Language,
    intent: str | None,
    lead_message: str | Sequence[str],
    history: Sequence[HistoryItem] = (),
) -> list[dict[str, str]]:
    """Chat messages for the completion call: system, history turns, the new message(s).

    A burst (several lead messages answered by one reply) is one user turn per message,
    oldest first, as the lead sent them.
    """
    messages = [{"role": "system", "content": system_prompt(profile, language, intent)}]
    for item in history:
        role = "user" if item.author == "lead" else "assistant"
        messages.append({"role": role, "content": item.body})
    news = [lead_message] if isinstance(lead_message, str) else list(lead_message)
    messages.extend({"role": "user", "content": body} for body in news)
    return messages


def render_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The prompt as one text, for ai_traces.prompt when settings.record_prompts is on."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def template_draft(profile: Profile, *, intent: str | None, language: Language) -> str:
    """The profile's template for the intent (or its default), placeholders filled."""
    return profile.render(profile.template_for(intent, language), language)


def clean_reply(text: str) -> str:
    """Tidy a model reply: models often wrap the answer in quotes or add a label."""
    cleaned = text.strip()
    for label in ("Reply:", "SMS:", "Respuesta:"):
        if cleaned.startswith(label):
            cleaned = cleaned[len(label) :].strip()
    if len(cleaned) >= 2 and cleaned[0] in "\"'“" and cleaned[-1] in "\"'”":
        cleaned = cleaned[1:-1].strip()
    return cleaned


_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


def fit_draft(text: str, limit: int) -> str:
    """The draft cut to ``limit`` characters, so the owner's prompt can show all of it.

    Cut after the last whole sentence that fits when that keeps at least half the
    limit, else at the last word boundary with "…". Truncating (rather than asking
    the model again) costs nothing and is predictable; the owner sees exactly the
    result and can EDIT it.
    """
    if len(text) <= limit:
        return text
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    if ends and ends[-1] >= limit // 2:
        return text[: ends[-1]]
    head = text[: limit - 1]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:-") + "…"
