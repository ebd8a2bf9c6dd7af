"""Hand-written lead SMS templates, English and Spanish, per intent.

The templates are data: ``lead_templates.yaml`` (first batch) and
``lead_templates_more.yaml`` (second batch, merged in without duplicates), each
``{slots: {language: {slot: [values]}}, templates: {intent: {language: [templates]}}}``.
A template may start with a sentiment mark: ``-`` NEGATIVE, ``+`` POSITIVE,
``=`` NEUTRAL; without one it takes the intent's default (``DEFAULT_SENTIMENT``).
Slots in braces are filled from ``SLOTS`` (per language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
#: Per language, per slot: the values a ``{slot}`` is filled with.
Slots = dict[str, dict[str, list[str]]]
#: Per intent (or sentiment), per language: the templates.
Templates = dict[str, dict[str, list[str]]]

INTENTS = (
    "booking",
    "pricing",
    "hours_location",
    "complaint",
    "confirmation",
    "acknowledgement",
    "greeting",
    "general_question",
    "spam",
    "other",
)

DEFAULT_SENTIMENT = {
    "booking": "NEUTRAL",
    "pricing": "NEUTRAL",
    "hours_location": "NEUTRAL",
    "complaint": "NEGATIVE",
    "confirmation": "NEUTRAL",
    "acknowledgement": "POSITIVE",
    "greeting": "NEUTRAL",
    "general_question": "NEUTRAL",
    "spam": "POSITIVE",
    "other": "NEUTRAL",
}


def load(name: str) -> tuple[Slots, Templates]:
    """The slots and templates of ``<name>.yaml`` beside this module."""
    data: dict[str, Any] = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
    return data["slots"], data["templates"]


def _merged() -> tuple[Slots, Templates]:
    """The first batch plus the second: slot values and templates, no duplicates."""
    slots, templates = load("lead_templates")
    more_slots, more = load("lead_templates_more")
    for language, by_slot in more_slots.items():
        for slot, values in by_slot.items():
            slots[language][slot].extend(v for v in values if v not in slots[language][slot])
    for intent, languages in more.items():
        for language, texts in languages.items():
            templates[intent][language].extend(t for t in texts if t not in templates[intent][language])
    return slots, templates


SLOTS, T = _merged()
