"""Rebuild ``vader_es_lexicon.json`` from the Spanish lexicons shipped in npm ``natural``.

Sources (both inside the MIT-licensed npm package ``natural``, lib/natural/sentiment/Spanish/):

- ``afinnShortSortedSpanish.json``: the AFINN word list (Nielsen 2011) in Spanish,
  integer valence -5..5, including emoji.
- ``senticon_es.json``: ML-SentiCon (Cruz, Troyano, Pontes, Ortega 2014), lemma
  polarities -1..1 built from Spanish WordNet.

The output maps each token to a valence on VADER's -4..4 scale, so VADER's
rule engine (negation, boosters, caps, punctuation) scores
Spanish with the same code as English. Word forms are added for the inflections
SMS writers use most (gender/number of adjectives, missing accents).

Run: python -m services.router.data.build_es_lexicon [natural-x.y.z.tgz]
(without an argument it fetches the tarball with ``npm pack natural``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from pathlib import Path

OUT = Path(__file__).with_name("vader_es_lexicon.json")
SPANISH = "package/lib/natural/sentiment/Spanish/"
#: ML-SentiCon polarities below this are too weak to move a short message.
MIN_SENTICON = 0.25
#: ML-SentiCon nouns and very short lemmas are noisy ("un" -0.375, "tal" 0.375,
#: "vez" 0.25): only adjectives, adverbs and verbs of 4+ letters are taken.
SENTICON_POS = frozenset({"a", "r", "v"})
MIN_LETTERS = 4
#: Machine-translation artefacts of AFINN that name a service, not a feeling:
#: "corte" is AFINN's "cut" (-1) but in a lead's SMS it is a haircut.
NOT_SENTIMENT = frozenset({"corte", "cortes"})
#: Frequent SMS words that neither source lists (ML-SentiCon has lemmas of
#: WordNet synsets only, AFINN-es no superlatives); VADER-scale values in line
#: with their nearest listed synonyms (malo -2.4, excelente 3.0).
SUPPLEMENT = {
    "pésimo": -3.0,
    "malísimo": -3.0,
    "fatal": -2.4,
    "horrible": -2.4,
    "asco": -2.4,
    "estafa": -2.4,
    "buenísimo": 3.0,
    "encanta": 2.4,
    "encantó": 2.4,
    "increíble": 2.4,
}


#: Spanish function words: they carry no feeling, and a valence on them swamps a
#: sentence ("y", "o", "a" are in nearly every message). "no"/"ni"/"sin" are
#: negators, handled by the rule engine, not by a valence of their own.
STOP_WORDS = frozenset(
    {
        "a", "al", "como", "con", "de", "del", "e", "el", "en", "es", "esa", "ese", "esta", "este",
        "fe", "ha", "la", "las", "le", "les", "lo", "los", "me", "mi", "mis", "na", "ni", "no", "o",
        "para", "pero", "por", "que", "se", "si", "sí", "sin", "su", "sus", "te", "tu", "u", "un",
        "una", "x", "y", "ya", "yo",
    }
)  # fmt: skip


def _strip_accents(word: str) -> str:
    # Canonical decomposition (NFD) only: compatibility folding (NFKD) turned
    # circled-letter emoji (ⓐ ⓨ ⓞ ⓧ, +5 in AFINN-es) into the words "a", "y",
    # "o", "x" worth +4.0 each, so most Spanish texts scored POSITIVE.
    decomposed = unicodedata.normalize("NFD", word)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch) or ch == "\u0303")
    return unicodedata.normalize("NFC", kept)


def _inflections(word: str, pos: str) -> list[str]:
    forms = [word]
    if pos == "a":
        if word.endswith("o"):
            forms += [word[:-1] + "a", word + "s", word[:-1] + "as"]
        elif word.endswith(("e", "a")):
            forms.append(word + "s")
        elif word[-1:].isalpha():
            forms.append(word + "es")
    return forms


def build(tarball: Path) -> dict[str, float]:
    with tarfile.open(tarball) as tar:

        def load(name: str) -> dict[str, object]:
            member = tar.extractfile(SPANISH + name)
            assert member is not None
            data: dict[str, object] = json.loads(member.read().decode("utf-8"))
            return data

        afinn = load("afinnShortSortedSpanish.json")
        senticon = load("senticon_es.json")
    lexicon: dict[str, float] = {}
    for lemma, entry in senticon.items():
        assert isinstance(entry, dict)
        pol = float(entry["pol"])
        if abs(pol) < MIN_SENTICON or " " in lemma or "_" in lemma:
            continue
        if entry["pos"] not in SENTICON_POS or len(lemma) < MIN_LETTERS:
            continue
        for form in _inflections(lemma.lower(), str(entry["pos"])):
            lexicon.setdefault(form, round(pol * 4.0, 3))
    # AFINN is word-form based and hand-rated: it wins where both have a word.
    for word, value in afinn.items():
        if " " in word:
            continue
        assert isinstance(value, int | float)
        for form in _inflections(word.lower(), "a" if word.endswith("o") else ""):
            lexicon.setdefault(form, round(float(value) * 0.8, 3))
        lexicon[word.lower()] = round(float(value) * 0.8, 3)
    for word, valence in SUPPLEMENT.items():
        for form in _inflections(word, "a"):
            lexicon.setdefault(form, valence)
    for word in NOT_SENTIMENT:
        lexicon.pop(word, None)
    # VADER looks up single tokens: drop markup ("*mejor", "encender(se)") and
    # compounds ("gris-metálico"); keep words and emoji.
    for word in [w for w in lexicon if not w.isalpha() and any(c.isalnum() for c in w)]:
        del lexicon[word]
    for word in list(lexicon):
        bare = _strip_accents(word)
        lexicon.setdefault(bare, lexicon[word])
    # Single letters and function words carry no valence, whatever a source says.
    for word in [w for w in lexicon if w in STOP_WORDS or (len(w) == 1 and w.isalpha())]:
        del lexicon[word]
    return lexicon


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            tarball = Path(argv[0])
        else:
            subprocess.run(["npm", "pack", "natural@8.1.1"], cwd=tmp, check=True)
            tarball = next(Path(tmp).glob("natural-*.tgz"))
        lexicon = build(tarball)
    ordered = dict(sorted(lexicon.items()))
    # One entry per line keeps diffs of a rebuild readable.
    body = ",\n".join(f"{json.dumps(k, ensure_ascii=False)}: {v}" for k, v in ordered.items())
    OUT.write_text("{\n" + body + "\n}\n", encoding="utf-8")
    print(f"wrote {len(ordered)} entries to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
