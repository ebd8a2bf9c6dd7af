"""Train the router's intent and sentiment models from the corpus in the repository.

    python -m services.router.train          # writes services/router/data/{intent,sentiment}_model.npz
    python -m services.router.train --validate [--tweet-weight W] [--c C]   # sentiment, validation split

Needs scikit-learn (a dev dependency; the router itself only needs numpy to
score). Deterministic: same corpus, same seed, same files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.router.corpus.generate import TEST_SEED, TRAIN_SEED, Example, Side, generate
from services.router.corpus.templates import DEFAULT_SENTIMENT
from services.router.corpus.tweets import generate_tweets
from services.router.features import features
from services.router.intents import DEFAULT_INTENTS, IntentClassifier
from services.router.model import DIMENSIONS, bucket

DATA = Path(__file__).parent / "data"
INTENT_MODEL = DATA / "intent_model.npz"
SENTIMENT_MODEL = DATA / "sentiment_model.npz"
PER_INTENT = 500
#: Tweet-like texts per sentiment and language (sentiment model only).
PER_TWEET_CLASS = 400
#: Sample weight of a tweet-like text relative to a lead SMS (``--validate --tweet-weight W``
#: compared 0, 0.3 and 1: no clear winner, 1 kept).
TWEET_WEIGHT = 1.0
#: Inverse regularisation strength, chosen on a validation split of the training side
#: (sentiment: `--validate --c C` for C in 0.5-64, best mean NEGATIVE F1 at 32).
C_INTENT = 3.0
C_SENTIMENT = 32.0


def training_examples(side: Side = "train") -> list[Example]:
    examples = generate(side, per_intent=PER_INTENT, seed=TRAIN_SEED)
    # The packaged profile's own examples are training data too.
    for intent in IntentClassifier(DEFAULT_INTENTS).intents:
        for lang, texts in intent.raw_examples.items():
            for text in texts:
                sentiment = DEFAULT_SENTIMENT.get(intent.name, "NEUTRAL")
                examples.append(Example(text, lang, intent.name, sentiment))
    return examples


def matrix(texts: Sequence[str]) -> object:
    from scipy.sparse import csr_matrix

    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[float] = []
    for text in texts:
        merged: dict[int, float] = {}
        for name, value in features(text).items():
            b = bucket(name)
            merged[b] = merged.get(b, 0.0) + value
        indices.extend(merged)
        data.extend(merged.values())
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(texts), DIMENSIONS), dtype=np.float64)


def fit(
    texts: Sequence[str],
    labels: Sequence[str],
    c: float,
    out: Path | None,
    weights: Sequence[float] | None = None,
) -> Any:
    from sklearn.linear_model import LogisticRegression

    x = matrix(texts)
    model = LogisticRegression(C=c, max_iter=300, tol=1e-3, class_weight="balanced")
    model.fit(x, list(labels), sample_weight=None if weights is None else np.asarray(weights))
    if out is None:
        return model
    coef = model.coef_.T.astype(np.float32)  # (DIMENSIONS, classes)
    assert coef.shape[1] == len(model.classes_) > 2, "multi-class models only"
    rows = np.flatnonzero(np.abs(coef).max(axis=1) > 1e-6).astype(np.int32)
    np.savez_compressed(
        out,
        rows=rows,
        coef=coef[rows],
        intercept=model.intercept_.astype(np.float64),
        classes=np.array([str(c) for c in model.classes_]),
    )
    return model


def sentiment_data(
    side: Side, examples: list[Example], tweet_weight: float = TWEET_WEIGHT
) -> tuple[list[str], list[str], list[float]]:
    """Lead examples plus tweet-like texts (weighted ``tweet_weight``) for the sentiment model."""
    tweets = generate_tweets(side, per_class=PER_TWEET_CLASS, seed=TRAIN_SEED)
    texts = [e.text for e in examples] + [t for t, _, _ in tweets]
    labels = [e.sentiment for e in examples] + [s for _, _, s in tweets]
    weights = [1.0] * len(examples) + [tweet_weight] * len(tweets)
    return texts, labels, weights


def validate(tweet_weight: float, c: float = C_SENTIMENT) -> int:
    """Fit the sentiment model on the "fit" part of the training side and score the "val" part
    (NEGATIVE precision/recall per language, leads and tweet-like texts). Writes no model."""
    texts, labels, weights = sentiment_data("fit", training_examples("fit"), tweet_weight)
    model = fit(texts, labels, c, None, weights)
    val = [(e.text, e.language, e.sentiment, "lead") for e in generate("val", per_intent=60, seed=TEST_SEED)]
    val += [(t, lg, s, "tweet") for t, lg, s in generate_tweets("val", per_class=60, seed=TEST_SEED)]
    neg = list(model.classes_).index("NEGATIVE")
    predicted = model.predict_proba(matrix([v[0] for v in val]))[:, neg] >= 0.5
    for kind in ("lead", "tweet"):
        for lang in ("en", "es"):
            pick = [
                (v[2] == "NEGATIVE", p)
                for v, p in zip(val, predicted, strict=True)
                if (v[1], v[3]) == (lang, kind)
            ]
            tp = sum(1 for g, p in pick if g and p)
            print(
                f"val {kind} {lang}: NEGATIVE precision {tp / max(1, sum(p for _, p in pick)):.3f}"
                f" recall {tp / max(1, sum(g for g, _ in pick)):.3f} (n={len(pick)})"
            )
    return 0


def main(argv: list[str]) -> int:
    if "--validate" in argv:
        weight = float(argv[argv.index("--tweet-weight") + 1]) if "--tweet-weight" in argv else TWEET_WEIGHT
        c = float(argv[argv.index("--c") + 1]) if "--c" in argv else C_SENTIMENT
        return validate(weight, c)
    started = time.perf_counter()
    examples = training_examples()
    fit([e.text for e in examples], [e.intent for e in examples], C_INTENT, INTENT_MODEL)
    # Sentiment also learns from public-post style texts, which have no intent.
    texts, labels, weights = sentiment_data("train", examples)
    fit(texts, labels, C_SENTIMENT, SENTIMENT_MODEL, weights)
    took = time.perf_counter() - started
    print(
        f"trained on {len(examples)} examples (+{len(texts) - len(examples)} for sentiment) in {took:.1f}s"
        f" -> {INTENT_MODEL.name}, {SENTIMENT_MODEL.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
