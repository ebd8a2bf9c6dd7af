"""The local classifiers on hand-picked cases; measured accuracy is in docs/classifiers.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.router.classification import LocalClassifier
from services.router.intents import IntentClassifier, IntentsError
from services.router.language import LanguageDetector
from services.router.sentiment import SentimentAnalyzer
from services.router.settings import RouterSettings


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.fixture(scope="module")
def sentiment() -> SentimentAnalyzer:
    return SentimentAnalyzer()


@pytest.fixture(scope="module")
def intents() -> IntentClassifier:
    return IntentClassifier()


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hi, do you have any openings on Saturday morning for a cleaning?", "en"),
        ("Hola, tienen citas disponibles para el sábado en la mañana?", "es"),
        ("cuanto cuesta", "es"),
        ("gracias!!", "es"),
        ("how much 4 a cut?", "en"),
    ],
)
def test_language_en_es(detector: LanguageDetector, text: str, language: str) -> None:
    result = detector.detect(text)
    assert result.language == language
    assert result.confidence >= 0.7


def test_foreign_text_is_named(detector: LanguageDetector) -> None:
    result = detector.detect("Bonjour, je voudrais prendre rendez-vous demain matin s'il vous plaît")
    assert (result.language, result.method) == ("fr", "foreign")


@pytest.mark.parametrize("text", ["k", "thx", "r u open sat", "lol wut"])
def test_short_slang_is_never_foreign_nor_judged(detector: LanguageDetector, text: str) -> None:
    result = detector.detect(text)
    assert result.language in ("en", "es")
    assert not result.judged


def test_letterless_text_is_neutral(detector: LanguageDetector) -> None:
    result = detector.detect("👍 5:30 !!")
    assert (result.language, result.method) == ("en", "neutral")


def test_accent_marks_short_spanish(detector: LanguageDetector) -> None:
    assert detector.detect("sí").language == "es"


@pytest.mark.parametrize(
    ("text", "language", "label"),
    [
        ("This is the worst service ever, I'm furious", "en", "NEGATIVE"),
        ("Thanks so much, you guys are great!", "en", "POSITIVE"),
        ("Can I book for tomorrow at 5?", "en", "NEUTRAL"),
        ("El servicio fue pésimo", "es", "NEGATIVE"),
        ("No me gustó nada", "es", "NEGATIVE"),
        ("No me gustó nada, pésimo servicio", "es", "NEGATIVE"),
        ("Sin problema, nos vemos el lunes", "es", "POSITIVE"),
        ("Muy bueno, muchas gracias 😊", "es", "POSITIVE"),
        ("Hola, cuánto cuesta un corte?", "es", "NEUTRAL"),
    ],
)
def test_sentiment(sentiment: SentimentAnalyzer, text: str, language: str, label: str) -> None:
    assert sentiment.score(text, language).label == label


def test_spanish_negation_flips_polarity(sentiment: SentimentAnalyzer) -> None:
    assert sentiment.score("es bueno", "es").score > 0 > sentiment.score("no es bueno", "es").score


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Can I book an appt tmrw at 5?", "booking"),
        ("tienen citas el sábado en la tarde?", "booking"),
        ("hi, how much is a haircut?", "pricing"),
        ("Cuánto cuesta la limpieza?", "pricing"),
        ("what time do you close today", "hours_location"),
        ("donde estan ubicados?", "hours_location"),
        ("do you guys do brakes", "general_question"),
        ("hello there", "greeting"),
        ("Buenos días", "greeting"),
        ("Sí, perfecto", "confirmation"),
        ("ok see you then", "confirmation"),
        ("nope", "confirmation"),
        ("I want a refund, your tech never showed up", "complaint"),
        ("quiero hablar con el gerente", "complaint"),
        ("asdf qwerty", "unknown"),
        ("my uncle said hi", "unknown"),
    ],
)
def test_intents(intents: IntentClassifier, text: str, intent: str) -> None:
    assert intents.classify(text).intent == intent


def test_intent_file_is_per_business(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(
        "intents:\n  towing:\n    patterns:\n      en: ['\\btow\\w*\\b']\n      es: ['\\bgrua\\b']\n"
    )
    custom = IntentClassifier(path)
    assert custom.classify("need a tow on I-95").intent == "towing"
    assert custom.classify("necesito una grúa").intent == "towing"
    assert custom.classify("how much for a haircut").intent == "unknown"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("intents:\n  x:\n    patterns:\n      en: ['(']\n", "bad pattern"),
        ("intents:\n  x:\n    patterns:\n      fr: ['a']\n", "languages"),
        ("intents:\n  unknown: {}\n", "unknown"),
        ("intents: [1, 2]\n", "Expected"),
    ],
)
def test_bad_intent_files_are_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(content)
    with pytest.raises(IntentsError, match=message):
        IntentClassifier(path)


def test_settings_drive_the_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text("intents:\n  hello:\n    patterns:\n      en: ['^hi$']\n")
    c = LocalClassifier(RouterSettings(intents_path=str(path), negative_threshold=-0.9))
    assert c.classify("hi").intent == "hello"
    # A mildly negative text is not NEGATIVE under a -0.9 threshold.
    assert c.classify("that is a bit bad").sentiment != "NEGATIVE"


@pytest.mark.parametrize(
    "overrides",
    [
        {"language_threshold": 1.5},
        {"default_language": "fr"},
        {"negative_threshold": 0.5},
        {"language_neighbours": ("xx",)},
    ],
)
def test_bad_router_settings_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RouterSettings(**overrides)  # type: ignore[arg-type]


def test_relative_intents_path_is_found_from_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    c = LocalClassifier(RouterSettings(intents_path="services/router/intents.yaml"))
    assert c.intents.classify("how much is it?").intent == "pricing"
