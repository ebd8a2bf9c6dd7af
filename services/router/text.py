"""Text normalisation shared by the keyword, intent and language code."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s?$]+")
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower-case, accents removed (but ñ kept), so 'Cuánto', 'cuanto' and 'CUANTO' match alike.

    SMS writers drop accents and capitalise at random; patterns are written
    once in this folded form.
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch) or ch == "\u0303")
    return unicodedata.normalize("NFC", kept)


def simplify(text: str) -> str:
    """Folded text with punctuation (except "?" and "$") removed and spaces collapsed."""
    # "what's" (straight or curly apostrophe) becomes "whats", as SMS writers often type it.
    folded = _APOSTROPHES.sub("", fold(text)).replace("_", " ")
    return _SPACES.sub(" ", _NON_WORD.sub(" ", folded)).strip()


def letter_count(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())
