"""The local classifier pipeline: language (lingua), then learned intent and sentiment.

Intent: a business profile's own patterns and examples (intents.yaml) win when
they match clearly, so an owner can teach the router their trade; otherwise the
learned model (``services.router.model``, trained by ``services.router.train``)
decides, and a low-confidence or "other" answer is ``unknown``. Sentiment is the
learned model's. Every answer carries the rule that decided it and its evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from services.router.features import features, lexicon
from services.router.intents import DEFAULT_INTENTS, UNKNOWN, IntentClassifier
from services.router.language import LanguageDetector, LanguageResult
from services.router.model import Encoded, LinearModel, encode
from services.router.settings import RouterSettings

Source = Literal["local", "llm"]
Label = Literal["NEGATIVE", "NEUTRAL", "POSITIVE"]
REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
INTENT_MODEL = DATA / "intent_model.npz"
SENTIMENT_MODEL = DATA / "sentiment_model.npz"
#: The model's class for messages that are not about the business.
OTHER = "other"


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
    #: How the intent was decided: "model", "profile_pattern", "profile_example", "low_score".
    intent_rule: str = "model"
    #: The strongest features behind intent and sentiment (for `replyline classify`).
    evidence: str = ""


class IntentDecider:
    """Profile overrides first, then the learned model."""

    def __init__(self, settings: RouterSettings, model: LinearModel) -> None:
        self.profile = IntentClassifier(intents_path(settings))
        self.path = self.profile.path
        self.model = model
        self.min_score = settings.intent_min_score
        self.example_score = settings.profile_example_score

    @property
    def names(self) -> list[str]:
        learned = [c for c in self.model.classes if c != OTHER]
        return list(dict.fromkeys([*learned, *self.profile.names]))

    def decide(self, text: str, feats: Encoded) -> tuple[str, float, str, tuple[str, ...]]:
        """(intent, score, rule, evidence)."""
        hit = self.profile.match(text)
        if hit is not None and (hit.by_pattern or hit.score >= self.example_score):
            rule = "profile_pattern" if hit.by_pattern else "profile_example"
            return hit.intent, hit.score, rule, ()
        pred = self.model.predict(feats)
        if pred.label == OTHER:
            return UNKNOWN, pred.score, "model_other", pred.evidence
        if pred.score < self.min_score:
            return UNKNOWN, pred.score, "low_score", pred.evidence
        return pred.label, pred.score, "model", pred.evidence


class SentimentDecider:
    def __init__(self, settings: RouterSettings, model: LinearModel) -> None:
        self.model = model
        self.negative_probability = settings.negative_probability

    def decide(self, feats: Encoded) -> tuple[Label, float, tuple[str, ...]]:
        """(label, score in -1..1 = P(positive) - P(negative), evidence)."""
        proba = self.model.proba(feats)
        neg, pos = proba.get("NEGATIVE", 0.0), proba.get("POSITIVE", 0.0)
        score = round(pos - neg, 4)
        if neg >= self.negative_probability:
            label: Label = "NEGATIVE"
        else:
            label = "POSITIVE" if pos > proba.get("NEUTRAL", 0.0) else "NEUTRAL"
        evidence = self.model.evidence(feats, "NEGATIVE") if label == "NEGATIVE" else ()
        return label, score, evidence


class LocalClassifier:
    """Everything loaded once (< 1 s); ``classify`` is pure, linear in the first
    ``features.MAX_CHARS`` characters and bounded (about a millisecond)."""

    def __init__(self, settings: RouterSettings) -> None:
        self.language = LanguageDetector(settings)
        self.intents = IntentDecider(settings, LinearModel(INTENT_MODEL))
        self.sentiment = SentimentDecider(settings, LinearModel(SENTIMENT_MODEL))
        lexicon()  # loaded now, not on the first message

    def classify(self, text: str) -> Classification:
        lang: LanguageResult = self.language.detect(text)
        feats = encode(features(text))
        intent, intent_score, rule, intent_evidence = self.intents.decide(text, feats)
        sentiment, sentiment_score, sentiment_evidence = self.sentiment.decide(feats)
        evidence = "; ".join(
            part
            for part in (
                f"intent: {', '.join(intent_evidence)}" if intent_evidence else "",
                f"negative: {', '.join(sentiment_evidence)}" if sentiment_evidence else "",
            )
            if part
        )
        return Classification(
            language=lang.language,
            language_confidence=lang.confidence,
            language_judged=lang.judged,
            language_method=lang.method,
            sentiment=sentiment,
            sentiment_score=sentiment_score,
            intent=intent,
            intent_score=round(intent_score, 4),
            intent_rule=rule,
            evidence=evidence,
        )
