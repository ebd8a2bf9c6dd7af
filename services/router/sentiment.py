"""Offline sentiment for short English and Spanish texts with VADER's rule engine.

English uses VADER's own lexicon. Spanish uses the same engine (negation,
boosters, capitals, punctuation emphasis) over ``data/vader_es_lexicon.json``
(AFINN-es + ML-SentiCon, see ``data/build_es_lexicon.py``), with English
entries kept underneath so emoji descriptions and English slang in Spanglish
messages still count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

import msgspec
from vaderSentiment.vaderSentiment import N_SCALAR, SentimentIntensityAnalyzer

Label = Literal["NEGATIVE", "NEUTRAL", "POSITIVE"]

ES_LEXICON = Path(__file__).parent / "data" / "vader_es_lexicon.json"
#: Frequent Spanish words that are English lexicon entries with another meaning
#: (found by intersecting the English lexicon with the 3,000 most frequent words
#: of Debian's fortunes-es): "sin" is "without", "ha" is "has", not laughter.
SPANISH_HOMOGRAPHS = frozenset({"sin", "ha", "alas", "hago", "lame"})


class Sentiment(msgspec.Struct, frozen=True):
    label: Label
    score: float  # VADER compound, -1 .. 1


class _SpanishAnalyzer(SentimentIntensityAnalyzer):
    # Pre-verbal negators only: "nada"/"nadie" mostly close an already negated
    # clause ("no me gustó nada, pésimo servicio") and would flip the next word.
    NEGATORS: ClassVar[frozenset[str]] = frozenset({"no", "nunca", "jamas", "jamás", "ni", "tampoco", "sin"})

    @staticmethod
    def _negation_check(valence: float, words_and_emoticons: list[str], start_i: int, i: int) -> float:
        # VADER looks 1-3 words back for an English negator; do the same for Spanish
        # ones and leave English negators ("not", "never") to the original rule.
        before = str(words_and_emoticons[i - (start_i + 1)]).lower()
        if before in _SpanishAnalyzer.NEGATORS:
            return valence * N_SCALAR
        result: float = SentimentIntensityAnalyzer._negation_check(valence, words_and_emoticons, start_i, i)
        return result


class SentimentAnalyzer:
    """Built once per process: loading the lexicons takes ~100 ms."""

    def __init__(self, negative_threshold: float = -0.05, positive_threshold: float = 0.05):
        if negative_threshold >= positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        self.negative_threshold = negative_threshold
        self.positive_threshold = positive_threshold
        self._en = SentimentIntensityAnalyzer()
        spanish: dict[str, float] = json.loads(ES_LEXICON.read_text(encoding="utf-8"))
        self._es = _SpanishAnalyzer()
        english = {w: v for w, v in self._en.lexicon.items() if w not in SPANISH_HOMOGRAPHS}
        self._es.lexicon = {**english, **spanish}

    def score(self, text: str, language: str | None) -> Sentiment:
        analyzer = self._es if language == "es" else self._en
        compound = float(analyzer.polarity_scores(text)["compound"])
        if compound <= self.negative_threshold:
            label: Label = "NEGATIVE"
        elif compound >= self.positive_threshold:
            label = "POSITIVE"
        else:
            label = "NEUTRAL"
        return Sentiment(label=label, score=round(compound, 4))
