"""Router settings: the common ones plus the classifiers' knobs."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from lingua import IsoCode639_1

from libs.llm import LlmSettings
from libs.settings import AtLeastOne, CommonSettings, Fraction, Positive


class RouterLlmSettings(LlmSettings, frozen=True, kw_only=True):
    """``REPLYLINE_ROUTER_LLM_*``: LLM classification of sentiment and intent; off while
    base_url is empty (the drafter's REPLYLINE_LLM_* does not turn it on)."""

    timeout_s: Positive = 10.0


class RouterSettings(CommonSettings, frozen=True, kw_only=True):
    #: Rule 6: EN/ES confidence (relative, see docs/classifiers.md) below this needs review.
    language_threshold: Fraction = 0.7
    #: Below this many letters a text is "short": never called foreign, and an
    #: EN/ES tie falls back to default_language instead of review.
    short_text_letters: Annotated[int, msgspec.Meta(ge=0)] = 20
    short_text_threshold: Fraction = 0.6
    default_language: Literal["en", "es"] = "en"
    #: Neighbouring languages lingua may answer, so foreign messages are noticed.
    language_neighbours: tuple[str, ...] = ("pt", "fr", "it", "de", "ca", "nl", "ro")
    #: A long-enough text is foreign when a neighbour outweighs both EN and ES this many times.
    foreign_ratio: Positive = 1.5
    #: Sentiment: the learned model's P(NEGATIVE) at or above this is NEGATIVE (rule 9).
    negative_probability: Fraction = 0.5
    #: Intent: the learned model's probability below this is "unknown" (rule 10).
    intent_min_score: Fraction = 0.45
    #: A profile example (intents.yaml) this similar (Dice word overlap) overrides the model.
    profile_example_score: Fraction = 0.8
    #: Threads that classify off the event loop (CPU work must not stall other threads' events).
    classify_workers: AtLeastOne = 1
    #: Intent patterns/examples; empty means the packaged services/router/intents.yaml.
    intents_path: str = ""
    #: Optional LLM classification (libs/llm.py); empty base URL = local only.
    router_llm: RouterLlmSettings = RouterLlmSettings()
    #: HUMAN_TAKEOVER ends (the AI drafts again) after this long without a human reply.
    takeover_quiet_s: Positive = 86400.0

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [c for c in self.language_neighbours if not hasattr(IsoCode639_1, c.upper())]
        if unknown:
            raise ValueError(f"language_neighbours: unknown ISO 639-1 code(s) {unknown}")
