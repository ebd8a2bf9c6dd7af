"""Features of one SMS for the learned classifiers: word and character n-grams
plus lexicon valence, shared by training (``services.router.train``) and the
router, so both see exactly the same thing.

Cost is linear in the text and bounded: only the first ``MAX_CHARS`` characters
are looked at (a lead's intent and mood are in the opening of a message; a
1,600-character emoji string must not cost more than an ordinary SMS).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path

#: Characters of a message the classifiers read (a concatenated SMS is 1,600).
MAX_CHARS = 320
_URL = re.compile(r"(https?://\S+|www\.\S+|\b[\w-]+\.(com|net|org|co|uk|mx|ly|info|biz|io)(/\S*)?\b)", re.I)
_LONG_NUMBER = re.compile(r"\b\d[\d ]{4,}\d\b")
_MONEY = re.compile(r"[$£€]\s?\d[\d,.]*|\b\d+\s?(dollars|bucks|dolares|dólares|pesos|euros|dls)\b", re.I)
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]", re.UNICODE)
_APOSTROPHE = re.compile(r"['\u2019`]")

NEGATORS = frozenset({"not", "no", "never", "dont", "didnt", "doesnt", "isnt", "wasnt", "cant", "wont",
                      "nunca", "jamas", "ni", "tampoco", "sin", "nadie", "nada"})  # fmt: skip
#: Frequent Spanish words that are English lexicon entries with another meaning.
SPANISH_HOMOGRAPHS = frozenset({"sin", "ha", "alas", "hago", "lame"})
ES_LEXICON = Path(__file__).parent / "data" / "vader_es_lexicon.json"


def fold(text: str) -> str:
    """Lower case, accents dropped (ñ kept)."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    kept = "".join(c for c in decomposed if not unicodedata.combining(c) or c == "\u0303")
    return unicodedata.normalize("NFC", kept)


def normalise(text: str) -> str:
    """Bounded, folded text with links, long numbers and amounts replaced by markers."""
    text = fold(text[:MAX_CHARS])
    text = _URL.sub(" xurlx ", text)
    text = _MONEY.sub(" xmoneyx ", text)
    text = _LONG_NUMBER.sub(" xlongnumx ", text)
    return _APOSTROPHE.sub("", text)


@cache
def lexicon() -> dict[str, float]:
    """VADER's English lexicon (without Spanish homographs) under the Spanish one, folded."""
    import vaderSentiment  # the package ships the lexicon as a text file

    path = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    merged: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0] not in SPANISH_HOMOGRAPHS:
            merged[fold(parts[0])] = float(parts[1])
    spanish: dict[str, float] = json.loads(ES_LEXICON.read_text(encoding="utf-8"))
    for word, valence in spanish.items():
        merged[fold(word)] = valence
    return merged


def features(text: str) -> dict[str, float]:
    """Feature name -> value. N-gram part is L2-normalised; lexicon features are added on top."""
    norm = normalise(text)
    tokens = _TOKEN.findall(norm)
    names: list[str] = ["w:" + tok for tok in tokens]
    names += ["b:" + prev + " " + tok for prev, tok in zip(["<s>", *tokens], [*tokens, "</s>"], strict=True)]
    words = [t for t in tokens if t.isalnum()]
    for word in words:
        padded = f" {word} "
        for n in (3, 4):
            names += ["c:" + padded[j : j + n] for j in range(len(padded) - n + 1)]
    n = len(words)
    names.append(
        "len:" + ("0" if n == 0 else "1" if n == 1 else "2" if n == 2 else "3-5" if n <= 5 else "6+")
    )
    if norm.rstrip().endswith("?"):
        names.append("end:?")
    counts = Counter(names)
    norm2 = sum(v * v for v in counts.values()) ** 0.5 or 1.0
    out = {k: v / norm2 for k, v in counts.items()}
    pos, neg = _valence(tokens)
    if pos:
        out["lex:pos"] = min(pos / 4.0, 2.0)
    if neg:
        out["lex:neg"] = min(neg / 4.0, 2.0)
    return out


def _valence(tokens: list[str]) -> tuple[float, float]:
    """Sums of positive and negative lexicon valence; a negator up to 3 words back flips a word."""
    lex = lexicon()
    pos = neg = 0.0
    for i, tok in enumerate(tokens):
        value = lex.get(tok)
        if not value:
            continue
        if any(t in NEGATORS for t in tokens[max(0, i - 3) : i]):
            value = -0.74 * value  # VADER's N_SCALAR
        if value > 0:
            pos += value
        else:
            neg -= value
    return pos, neg
