"""Train the router's intent and sentiment models from the corpus in the repository.

    python -m services.router.train          # writes services/router/data/{intent,sentiment}_model.npz

Needs scikit-learn (a dev dependency; the router itself only needs numpy to
score). Deterministic: same corpus, same seed, same files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.router.corpus.generate import TRAIN_SEED, Example, generate
from services.router.corpus.templates import DEFAULT_SENTIMENT
from services.router.features import features
from services.router.intents import DEFAULT_INTENTS, IntentClassifier
from services.router.model import DIMENSIONS, bucket

DATA = Path(__file__).parent / "data"
INTENT_MODEL = DATA / "intent_model.npz"
SENTIMENT_MODEL = DATA / "sentiment_model.npz"
PER_INTENT = 500
#: Inverse regularisation strength, chosen on a validation split of the training side.
C_INTENT = 3.0
C_SENTIMENT = 2.0


def training_examples() -> list[Example]:
    examples = generate("train", per_intent=PER_INTENT, seed=TRAIN_SEED)
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


def fit(texts: Sequence[str], labels: Sequence[str], c: float, out: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = matrix(texts)
    model = LogisticRegression(C=c, max_iter=300, tol=1e-3, class_weight="balanced")
    model.fit(x, list(labels))
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


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    examples = training_examples()
    texts = [e.text for e in examples]
    fit(texts, [e.intent for e in examples], C_INTENT, INTENT_MODEL)
    fit(texts, [e.sentiment for e in examples], C_SENTIMENT, SENTIMENT_MODEL)
    took = time.perf_counter() - started
    print(
        f"trained on {len(examples)} examples in {took:.1f}s -> {INTENT_MODEL.name}, {SENTIMENT_MODEL.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
