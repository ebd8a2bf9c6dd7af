"""A linear classifier over hashed features, scored with numpy.

The model file is a plain ``.npz`` (no pickle): the hashed feature rows that
carry weight, their per-class coefficients, the intercepts and the class names.
``services.router.train`` writes it; loading takes milliseconds.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import msgspec
import numpy as np

#: Hash space of feature names (crc32 modulo this).
DIMENSIONS = 1 << 18


@lru_cache(maxsize=1 << 17)  # n-grams repeat from message to message
def bucket(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) & (DIMENSIONS - 1)


class Prediction(msgspec.Struct, frozen=True):
    label: str
    score: float  # probability of ``label``
    #: The features that pushed hardest towards ``label`` (for explanations).
    evidence: tuple[str, ...] = ()


class Encoded(msgspec.Struct, frozen=True):
    """A message's features, hashed once and scored by every model."""

    names: list[str]
    idx: np.ndarray
    values: np.ndarray


def encode(feats: dict[str, float]) -> Encoded:
    names = list(feats)
    idx = np.fromiter((bucket(n) for n in names), dtype=np.int64, count=len(names))
    values = np.fromiter(feats.values(), dtype=np.float64, count=len(names))
    return Encoded(names, idx, values)


class LinearModel:
    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            rows = data["rows"]
            coef = data["coef"]
            self.intercept = data["intercept"].astype(np.float64)
            self.classes: list[str] = [str(c) for c in data["classes"]]
        self.coef = np.zeros((DIMENSIONS, len(self.classes)), dtype=np.float32)
        self.coef[rows] = coef
        self.path = path

    def probabilities(self, x: Encoded) -> np.ndarray:
        logits = x.values @ self.coef[x.idx] + self.intercept if len(x.idx) else self.intercept.copy()
        logits -= logits.max()
        probs: np.ndarray = np.exp(logits)
        return probs / probs.sum()

    def evidence(self, x: Encoded, label: str, top: int = 3) -> tuple[str, ...]:
        """The features that pushed hardest towards ``label``."""
        if not len(x.idx):
            return ()
        contrib = x.values * self.coef[x.idx, self.classes.index(label)]
        order = np.argsort(-contrib)[:top]
        return tuple(x.names[i] for i in order if contrib[i] > 0)

    def predict(self, x: Encoded, explain: int = 3) -> Prediction:
        probs = self.probabilities(x)
        best = int(probs.argmax())
        label = self.classes[best]
        evidence = self.evidence(x, label, explain) if explain else ()
        return Prediction(label, round(float(probs[best]), 4), evidence)

    def proba(self, x: Encoded) -> dict[str, float]:
        return {c: float(p) for c, p in zip(self.classes, self.probabilities(x), strict=True)}
