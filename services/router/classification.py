"""The local classifier pipeline: language, then sentiment and intent."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from services.router.intents import DEFAULT_INTENTS, IntentClassifier
from services.router.language import LanguageDetector, LanguageResult
from services.router.sentiment import Label, SentimentAnalyzer
from services.router.settings import RouterSettings

Source = Literal["local", "llm"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def intents_path(settings: RouterSettings) -> Path:
    """The configured intents file; a relative path is tried from the working
    directory, then from the repository root (so `replyline dev` finds it anywhere)."""
    if not settings.intents_path:
        return DEFAULT_INTENTS
    path = Path(settings.intents_path)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


class Classification(msgspec.Struct, frozen=True, kw_only=True):
    language: str
    language_confidence: float
    #: Whether the language threshold applies (False for short or letter-less texts).
    language_judged: bool
    language_method: str
    sentiment: Label
    sentiment_score: float
    intent: str
    intent_score: float
    source: Source = "local"


class LocalClassifier:
    """Everything loaded once; ``classify`` is pure and fast (thousands of texts/s)."""

    def __init__(self, settings: RouterSettings) -> None:
        self.language = LanguageDetector(
            neighbours=settings.language_neighbours,
            default_language=settings.default_language,
            short_text_letters=settings.short_text_letters,
            foreign_ratio=settings.foreign_ratio,
            threshold=settings.language_threshold,
            short_threshold=settings.short_text_threshold,
        )
        self.sentiment = SentimentAnalyzer(
            negative_threshold=settings.negative_threshold,
            positive_threshold=settings.positive_threshold,
        )
        self.intents = IntentClassifier(intents_path(settings))

    def classify(self, text: str) -> Classification:
        lang: LanguageResult = self.language.detect(text)
        sentiment = self.sentiment.score(text, lang.language)
        intent = self.intents.classify(text)
        return Classification(
            language=lang.language,
            language_confidence=lang.confidence,
            language_judged=lang.judged,
            language_method=lang.method,
            sentiment=sentiment.label,
            sentiment_score=sentiment.score,
            intent=intent.intent,
            intent_score=intent.score,
        )
