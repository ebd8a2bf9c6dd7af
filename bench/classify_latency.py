"""Worst-case cost of classifying one message (issue 11 item 7).

    python -m bench.classify_latency

A 1,600-character SMS of 😸 (VADER, quadratic on emoji, took ~5.6 s on it; 60 KB
took 111 s) and a 60 KB one must each classify in < 50 ms: the classifiers read
a bounded opening of the message and are linear in it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.router.classification import LocalClassifier
from services.router.settings import RouterSettings

BOUND_MS = 50.0
CASES = {
    "1,600 x 😸": "😸" * 1600,
    "60 KB of 😸": "😸" * 15_000,
    "1,600 chars of text": ("my heater leaks again, " * 80)[:1600],
}


def main() -> int:
    classifier = LocalClassifier(RouterSettings())
    classifier.classify("warm up")
    worst = 0.0
    for name, text in CASES.items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            classifier.classify(text)
            times.append((time.perf_counter() - started) * 1000)
        best, slowest = min(times), max(times)
        worst = max(worst, best)
        print(f"{name:>22}: best {best:6.2f} ms, slowest {slowest:6.2f} ms of 5")
    ok = worst < BOUND_MS
    print(f"{'PASS' if ok else 'FAIL'}: worst best-of-5 {worst:.2f} ms (bound {BOUND_MS:.0f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
