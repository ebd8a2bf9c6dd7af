"""The local classifiers on hand-picked cases; measured accuracy is in docs/classifiers.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from libs.settings import SettingsError, load
from services.router.classification import LocalClassifier
from services.router.data.build_es_lexicon import STOP_WORDS, _strip_accents
from services.router.features import ES_LEXICON, lexicon
from services.router.intents import IntentClassifier, IntentsError
from services.router.language import LanguageDetector
from services.router.settings import RouterSettings


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


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


@pytest.fixture(scope="module")
def local() -> LocalClassifier:
    return LocalClassifier(RouterSettings())


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("This is the worst service ever, I'm furious", "NEGATIVE"),
        ("the heater you installed leaks again", "NEGATIVE"),
        ("Can I book for tomorrow at 5?", "NEUTRAL"),
        ("El servicio fue pésimo", "NEGATIVE"),
        ("el técnico nunca vino y nadie contesta", "NEGATIVE"),
        ("Hola, cuánto cuesta un corte?", "NEUTRAL"),
    ],
)
def test_sentiment(local: LocalClassifier, text: str, label: str) -> None:
    assert local.classify(text).sentiment == label


def test_spanish_stop_words_carry_no_valence() -> None:
    """Issue 12: NFKD folded circled-letter emoji (ⓐ ⓨ ⓞ ⓧ) into "a", "y", "o", "x" at +4.0."""
    lexicon = json.loads(ES_LEXICON.read_text(encoding="utf-8"))
    assert not {w: lexicon[w] for w in STOP_WORDS if w in lexicon}
    assert not [w for w in lexicon if len(w) == 1 and w.isalpha()]
    assert lexicon.get("ⓐ") is not None  # the emoji itself keeps its valence


def test_lexicon_build_does_not_fold_compatibility_characters() -> None:
    assert _strip_accents("ⓐ") == "ⓐ"
    assert _strip_accents("pésimo") == "pesimo"
    assert _strip_accents("mañana") == "mañana"


def test_lexicon_features_have_no_stop_word_valence() -> None:
    lex = lexicon()
    assert all(lex.get(w, 0.0) == 0.0 for w in ("a", "y", "o", "x", "e", "que", "de"))


def test_a_huge_emoji_message_costs_what_a_short_one_does(local: LocalClassifier) -> None:
    """Issue 11 item 7: 1,600 x 😸 took VADER ~5.6 s; the bound is generous for a loaded machine."""
    started = time.perf_counter()
    local.classify("😸" * 15_000)
    assert time.perf_counter() - started < 0.5


# A small golden set per intent (EN and ES); measured accuracy is in docs/classifiers.md.
GOLDEN = [
    ("Can I book an appt tmrw at 5?", "booking"),
    ("tienen citas el sábado en la tarde?", "booking"),
    ("hi, how much is a haircut?", "pricing"),
    ("Cuánto cuesta la limpieza?", "pricing"),
    ("what time do you close today", "hours_location"),
    ("donde estan ubicados?", "hours_location"),
    ("my card payment was reverted", "complaint"),
    ("the heater you installed leaks again", "complaint"),
    ("el técnico nunca vino y nadie contesta", "complaint"),
    ("Ohh right okay thanks! (:", "acknowledgement"),
    ("Yes. that will be fine", "acknowledgement"),
    ("ok gracias", "acknowledgement"),
    ("yes please book it", "confirmation"),
    ("no gracias, no me interesa", "confirmation"),
    ("hello there", "greeting"),
    ("Buenos días", "greeting"),
    ("do you guys do brakes", "general_question"),
    ("aceptan tarjeta?", "general_question"),
    ("£1000 cash prize, text CLAIM to 87121", "spam"),
    ("Felicidades! Ganaste un iPhone, reclama en www.premio.mx", "spam"),
    ("special", "unknown"),
    ("my uncle said hi", "unknown"),
]


@pytest.mark.parametrize(("text", "intent"), GOLDEN)
def test_golden_intents(local: LocalClassifier, text: str, intent: str) -> None:
    assert local.classify(text).intent == intent


@pytest.mark.parametrize(
    "text", ["open an account", "billing address", "I need to update my billing address"]
)
def test_hours_location_does_not_fire_on_accounts(local: LocalClassifier, text: str) -> None:
    assert local.classify(text).intent != "hours_location"


@pytest.mark.parametrize(
    "text",
    [
        "Bon dia, voldria demanar hora per demà al matí si us plau",  # Catalan
        "Bo día, quería pedir unha cita para mañá pola tarde, grazas",  # Galician
        "Olá, gostaria de marcar uma consulta para amanhã de manhã",  # Portuguese
        "Buongiorno, vorrei prenotare un appuntamento per domani mattina",  # Italian
        "Bonjour, je voudrais prendre rendez-vous demain matin s'il vous plaît",  # French
    ],
)
def test_neighbour_languages_are_foreign(detector: LanguageDetector, text: str) -> None:
    result = detector.detect(text)
    assert result.method == "foreign" and result.language not in ("en", "es")


def test_profile_example_steers_the_model(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text("intents:\n  booking:\n    examples:\n      en: ['special']\n")
    c = LocalClassifier(RouterSettings(intents_path=str(path)))
    result = c.classify("special")
    assert (result.intent, result.intent_rule) == ("booking", "profile_example")


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
    c = LocalClassifier(RouterSettings(intents_path=str(path), negative_probability=1.0))
    assert c.classify("hi").intent == "hello"
    # Nothing reaches P(NEGATIVE) >= 1.0.
    assert c.classify("this is the worst service ever").sentiment != "NEGATIVE"


@pytest.mark.parametrize(
    "overrides",
    [
        {"language_threshold": 1.5},
        {"default_language": "fr"},
        {"negative_probability": 1.5},
        {"language_neighbours": ("xx",)},
    ],
)
def test_bad_router_settings_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(SettingsError, match=f"(?i){next(iter(overrides))}"):
        load(RouterSettings, env={}, overrides=overrides)


def test_relative_intents_path_is_found_from_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    c = LocalClassifier(RouterSettings(intents_path="services/router/intents.yaml"))
    assert c.intents.path == Path(__file__).resolve().parents[2] / "services/router/intents.yaml"
    assert c.classify("how much is it?").intent == "pricing"
