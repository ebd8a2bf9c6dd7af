"""Intent classification from per-business patterns and examples kept in YAML.

See ``intents.yaml`` for the file format. The classifier is deliberately
simple and explainable: an owner can read why a message got its intent, and
fix it by adding a pattern or an example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from services.router.features import MAX_CHARS
from services.router.text import simplify

UNKNOWN = "unknown"
DEFAULT_INTENTS = Path(__file__).with_name("intents.yaml")
LANGUAGES = ("en", "es")


class IntentsError(Exception):
    """The intents file is missing, malformed or has a bad pattern."""


class IntentResult(msgspec.Struct, frozen=True):
    intent: str
    score: float


class ProfileHit(msgspec.Struct, frozen=True):
    intent: str
    score: float
    by_pattern: bool


class _IntentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    priority: int = 0
    max_score: float = 1.0
    patterns: dict[str, list[str]] = msgspec.field(default_factory=dict)
    examples: dict[str, list[str]] = msgspec.field(default_factory=dict)


class _IntentsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    intents: dict[str, _IntentSpec]
    min_score: float = 0.5
    pattern_score: float = 1.0
    extra_hit_score: float = 0.1


class _Intent:
    def __init__(self, name: str, spec: _IntentSpec) -> None:
        unknown = set(spec.patterns) | set(spec.examples)
        if not unknown <= set(LANGUAGES):
            raise IntentsError(f"intent {name!r}: languages must be among {LANGUAGES}")
        self.name = name
        self.priority = spec.priority
        self.max_score = spec.max_score
        self.patterns: list[re.Pattern[str]] = []
        for lang_patterns in spec.patterns.values():
            for pattern in lang_patterns:
                try:
                    self.patterns.append(re.compile(pattern))
                except re.error as exc:
                    raise IntentsError(f"intent {name!r}: bad pattern {pattern!r}: {exc}") from None
        self.raw_examples = spec.examples
        self.examples = [
            frozenset(simplify(example).split())
            for lang_examples in spec.examples.values()
            for example in lang_examples
        ]


class IntentClassifier:
    """Built once per process from an intents YAML file."""

    def __init__(self, path: Path = DEFAULT_INTENTS) -> None:
        self.path = path
        try:
            raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
            config = msgspec.convert(raw, _IntentsFile)
        except OSError as exc:
            raise IntentsError(f"{path}: cannot read ({exc.strerror})") from None
        except (yaml.YAMLError, msgspec.ValidationError) as exc:
            raise IntentsError(f"{path}: {exc}") from None
        if UNKNOWN in config.intents:
            raise IntentsError(f"{path}: {UNKNOWN!r} is what no match means; do not define it")
        self.min_score = config.min_score
        self.pattern_score = config.pattern_score
        self.extra_hit_score = config.extra_hit_score
        self.intents = [_Intent(name, spec) for name, spec in config.intents.items()]

    @property
    def names(self) -> list[str]:
        return [intent.name for intent in self.intents]

    def _score(self, intent: _Intent, text: str, tokens: frozenset[str]) -> float:
        hits = sum(1 for pattern in intent.patterns if pattern.search(text))
        score = 0.0
        if hits:
            score = min(1.0, self.pattern_score + self.extra_hit_score * (hits - 1))
        if tokens:
            for example in intent.examples:
                shared = len(tokens & example)
                if shared:
                    # Dice overlap: both the message and the example must be mostly shared.
                    score = max(score, 2.0 * shared / (len(tokens) + len(example)))
        return min(score, intent.max_score)

    def match(self, text: str) -> ProfileHit | None:
        """The best profile intent with any evidence, and whether a pattern (not only an example) hit."""
        folded = simplify(text[:MAX_CHARS])
        tokens = frozenset(folded.split())
        best: tuple[float, int, str, bool] | None = None
        for intent in self.intents:
            by_pattern = any(p.search(folded) for p in intent.patterns)
            score = self._score(intent, folded, tokens)
            if score > 0 and (best is None or (score, intent.priority) > best[:2]):
                best = (score, intent.priority, intent.name, by_pattern)
        if best is None:
            return None
        return ProfileHit(intent=best[2], score=round(best[0], 4), by_pattern=best[3])

    def classify(self, text: str) -> IntentResult:
        folded = simplify(text[:MAX_CHARS])
        tokens = frozenset(folded.split())
        best: tuple[float, int, str] = (0.0, -1, UNKNOWN)
        for intent in self.intents:
            score = self._score(intent, folded, tokens)
            if score > 0 and (score, intent.priority) > best[:2]:
                best = (score, intent.priority, intent.name)
        score, _, name = best
        if score < self.min_score:
            return IntentResult(UNKNOWN, round(score, 4))
        return IntentResult(name, round(score, 4))
