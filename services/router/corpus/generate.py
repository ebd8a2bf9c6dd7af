"""Fill the templates with slot values and SMS noise: a reproducible corpus.

``generate(side="train", seed=...)`` uses the templates whose stable hash puts
them on the training side; ``side="test"`` the others, so the held-out test
set is made of templates the model never saw (and another seed).
"""

from __future__ import annotations

import random
import re
import unicodedata
import zlib
from typing import Literal, NamedTuple

from services.router.corpus.templates import DEFAULT_SENTIMENT, INTENTS, SLOTS, T

Side = Literal["train", "test", "all"]
#: Share of templates held out for the test side.
TEST_SHARE = 0.2
TRAIN_SEED = 1
TEST_SEED = 7919

_SLOT = re.compile(r"\{(\w+)\}")


class Example(NamedTuple):
    text: str
    language: str
    intent: str
    sentiment: str


def template_side(template: str) -> Literal["train", "test"]:
    bucket = zlib.crc32(template.encode("utf-8")) % 1000
    return "test" if bucket < TEST_SHARE * 1000 else "train"


MOOD = {
    "NEGATIVE": {
        "en": ["ugh", "this is so frustrating", "I'm really upset", "not happy at all", "so annoyed rn",
               "smh", "I'm stressed out", "this is a nightmare", "😡", "😤", "wtf", "terrible week"],
        "es": ["qué coraje", "estoy muy molesta", "ya me tienen harto", "qué mal", "estoy desesperada",
               "😡", "😤", "no puede ser", "qué pésimo", "estoy enojado"],
    },
    "POSITIVE": {
        "en": ["thanks!", "you guys are the best", "love your work", "great reviews btw", "😊", "🙏",
               "appreciate it", "thank you so much", "awesome", "my friend recommended you"],
        "es": ["gracias!", "son los mejores", "me encanta su trabajo", "😊", "🙏", "muy amables",
               "muchas gracias", "excelente servicio", "una amiga me los recomendó"],
    },
}  # fmt: skip

SHORTHAND = {
    "en": {"you": "u", "are": "r", "your": "ur", "please": "pls", "thanks": "thx", "tomorrow": "tmrw",
           "for": "4", "to": "2", "appointment": "appt", "okay": "k", "because": "bc", "people": "ppl",
           "what": "wat", "see": "c", "before": "b4", "tonight": "2nite", "really": "rly", "know": "kno"},
    "es": {"que": "q", "por favor": "porfa", "porque": "xq", "también": "tb", "qué": "q", "para": "pa",
           "mañana": "mñn", "está": "sta", "saludos": "slds", "favor": "fvr", "quiero": "kiero",
           "gracias": "grax", "de": "d", "nada": "nda"},
}  # fmt: skip

EMOJI = ["🙂", "😊", "🙏", "👍", "😅", "😂", "❤️", "🔧", "🚗", "💇", "😬", "!!", "??", "...", ":)", "(:"]
CODE_SWITCH = {"en": ["hola", "gracias", "ok", "porfa"], "es": ["hi", "ok", "thanks", "please", "sorry"]}


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c) or c == "\u0303")
    )


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1 :]  # dropped letter
    if kind == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swapped
    if kind == 2:
        return word[:i] + word[i] + word[i:]  # doubled
    return word[:i] + rng.choice("aeiourstnl") + word[i + 1 :]  # wrong key


def noise(text: str, language: str, rng: random.Random) -> str:
    """SMS-like variation: shorthand, typos, casing, accents, punctuation, emoji, code switching."""
    if rng.random() < 0.35:
        for long, short in SHORTHAND[language].items():
            if rng.random() < 0.6:
                text = re.sub(rf"\b{re.escape(long)}\b", short, text, flags=re.IGNORECASE)
    if rng.random() < 0.4:
        words = text.split(" ")
        for _ in range(rng.randint(1, 2)):
            j = rng.randrange(len(words))
            words[j] = _typo(words[j], rng)
        text = " ".join(words)
    if language == "es" and rng.random() < 0.6:
        text = _strip_accents(text).replace("¿", "").replace("¡", "")
    r = rng.random()
    if r < 0.45:
        text = text.lower()
    elif r < 0.52:
        text = text.upper()
    elif r < 0.7:
        text = text[:1].upper() + text[1:]
    r = rng.random()
    if r < 0.3:
        text = text.rstrip("?.!")
    elif r < 0.4:
        text = text.rstrip("?.!") + rng.choice(["??", "!!", "?!", ".", " ?"])
    if rng.random() < 0.15:
        text = f"{rng.choice(EMOJI)} {text}" if rng.random() < 0.3 else f"{text} {rng.choice(EMOJI)}"
    if rng.random() < 0.08:
        text = f"{rng.choice(CODE_SWITCH[language])} {text}"
    return text


def _fill(template: str, language: str, rng: random.Random) -> str:
    slots = SLOTS[language]
    return _SLOT.sub(lambda m: rng.choice(slots[m.group(1)]), template)


def _sentiment_of(template: str, intent: str) -> tuple[str, str]:
    marks = {"-": "NEGATIVE", "+": "POSITIVE", "=": "NEUTRAL"}
    if template[:1] in marks:
        return template[1:], marks[template[0]]
    return template, DEFAULT_SENTIMENT[intent]


def generate(side: Side = "train", *, per_intent: int = 400, seed: int = TRAIN_SEED) -> list[Example]:
    """``per_intent`` examples per intent and language, from the templates of ``side``."""
    rng = random.Random(seed)
    out: list[Example] = []
    for intent in INTENTS:
        for language in ("en", "es"):
            templates = [t for t in T[intent][language] if side == "all" or template_side(t) == side]
            if not templates:
                continue
            for _ in range(per_intent):
                template, sentiment = _sentiment_of(rng.choice(templates), intent)
                text = _fill(template, language, rng)
                mood = rng.random()
                if intent not in ("spam", "other") and mood < 0.12:
                    extra = rng.choice(MOOD["NEGATIVE"][language])
                    sentiment = "NEGATIVE"
                    text = f"{extra} {text}" if rng.random() < 0.5 else f"{text} {extra}"
                elif intent not in ("spam", "complaint") and mood > 0.9 and sentiment != "NEGATIVE":
                    extra = rng.choice(MOOD["POSITIVE"][language])
                    sentiment = "POSITIVE"
                    text = f"{text} {extra}"
                out.append(Example(noise(text, language, rng), language, intent, sentiment))
    return out
