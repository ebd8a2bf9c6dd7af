"""Language detection tuned for short, misspelled SMS in English and Spanish.

lingua is given a handful of languages only: English and Spanish, which the
business answers, plus close neighbours (by default Portuguese, French,
Italian, German) so that a message really written in one of those is not
forced into English or Spanish. The decision then works on relative
confidence:

- a text with no letters (emoji, "5pm", "👍") is language-neutral: the default
  language, method ``neutral``;
- the answer is English or Spanish, whichever lingua rates higher, and the
  reported confidence is that language's share of the English+Spanish mass,
  i.e. how sure we are between the two languages we can answer in;
- only a text long enough to judge (``short_text_letters`` letters or more)
  can be called foreign: when lingua's top language is a neighbour (it
  outweighs both English and Spanish ``foreign_ratio`` times, 1.5 by default),
  or when it has Galician function words (lingua has no Galician model and
  calls it Spanish or Portuguese). Short texts ("k", "thx", "r u open") are
  where lingua guesses German or French for English slang;
- a short text with a character only Spanish uses (ñ, ¿, ¡, an accented
  vowel) is Spanish;
- a short text on which lingua cannot separate English from Spanish (below
  ``short_threshold``) gets the default language, method ``short_default``,
  instead of being sent to review: a two-word reply gives a detector too
  little to go on, and the owner approves every draft anyway.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from services.router.features import MAX_CHARS
from services.router.settings import RouterSettings
from services.router.text import letter_count, simplify

Method = Literal["detected", "short", "short_default", "neutral", "foreign"]
ANSWERED = ("en", "es")
_SPANISH_ONLY = frozenset("ñ¿¡áéíóú")
#: Frequent Galician words that are not Spanish, Portuguese or English words (folded).
_GALICIAN = frozenset(
    {"unha", "grazas", "moito", "moita", "moitas", "moitos", "tamen", "vostede", "vostedes", "coa",
     "polo", "pola", "xa", "ningun", "algunha", "facer", "quero", "cando", "hoxe", "onte", "eu", "teño"}
)  # fmt: skip
GALICIAN_MARKERS = 2


class LanguageResult(msgspec.Struct, frozen=True):
    language: str  # ISO 639-1, lower case
    confidence: float
    method: Method

    @property
    def judged(self) -> bool:
        """Whether the confidence threshold applies (texts long enough to judge)."""
        return self.method in ("detected", "foreign")


def _language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
    except AttributeError:
        raise ValueError(f"unknown ISO 639-1 language code {code!r}") from None


class LanguageDetector:
    """Built once per process (lingua preloads its models here)."""

    def __init__(self, settings: RouterSettings | None = None) -> None:
        """The thresholds, neighbours and default language are the router's settings
        (their defaults when none are given)."""
        s = settings or RouterSettings()
        codes = dict.fromkeys((*ANSWERED, *s.language_neighbours))
        self._languages = [_language(code) for code in codes]
        self._detector = (
            LanguageDetectorBuilder.from_languages(*self._languages).with_preloaded_language_models().build()
        )
        self.default_language: str = s.default_language
        self.short_text_letters = s.short_text_letters
        self.foreign_ratio = s.foreign_ratio
        self.threshold = s.language_threshold
        self.short_threshold = s.short_text_threshold

    def detect(self, text: str) -> LanguageResult:
        text = text[:MAX_CHARS]  # bounded cost: the opening of a message says its language
        letters = letter_count(text)
        if letters == 0:
            return LanguageResult(self.default_language, 1.0, "neutral")
        values = {
            c.language.iso_code_639_1.name.lower(): c.value
            for c in self._detector.compute_language_confidence_values(text)
        }
        en, es = values.get("en", 0.0), values.get("es", 0.0)
        answered_mass = en + es
        short = letters < self.short_text_letters
        foreign, foreign_value = max(
            ((code, v) for code, v in values.items() if code not in ANSWERED),
            key=lambda item: item[1],
            default=("", 0.0),
        )
        if not short and foreign_value > self.foreign_ratio * max(en, es):
            return LanguageResult(foreign, round(foreign_value, 4), "foreign")
        if not short and len(_GALICIAN.intersection(simplify(text).split())) >= GALICIAN_MARKERS:
            return LanguageResult("gl", 1.0, "foreign")
        if answered_mass <= 0.0:
            method: Method = "short_default" if short else "detected"
            return LanguageResult(self.default_language, 0.0, method)
        language = "en" if en >= es else "es"
        confidence = round(max(en, es) / answered_mass, 4)
        if not short:
            return LanguageResult(language, confidence, "detected")
        if language == "en" and not _SPANISH_ONLY.isdisjoint(text.lower()):
            return LanguageResult("es", round(es / answered_mass, 4), "short")
        if confidence < self.short_threshold:
            return LanguageResult(self.default_language, confidence, "short_default")
        return LanguageResult(language, confidence, "short")
