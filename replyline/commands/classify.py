"""``replyline classify``: run the router's classifiers and rules over JSON lines, offline.

    echo '{"text": "cuanto cuesta un corte?"}' | replyline classify
    replyline classify messages.jsonl > decisions.jsonl
    REPLYLINE_INTENTS_PATH=my_intents.yaml replyline classify messages.jsonl

Each input line is {"text": ..., "from": optional E.164, "num_media": optional int};
each output line has language (+confidence, method), sentiment(+score), intent(+score,
and intent_rule: which of the profile or the model decided), the features that
weighed most (evidence), decision and rule (the routing rule that decided),
computed by exactly the router's code with the router's settings
(REPLYLINE_* variables / REPLYLINE_CONFIG). Threads are taken as neither paused nor
opted out. The LLM is never called: this is the local classifier.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

import msgspec

from libs.settings import SettingsError, load
from replyline.commands._parser import subcommand
from replyline.services import SERVICES
from services.router.classification import Classification, LocalClassifier
from services.router.intents import IntentsError
from services.router.rules import RouteInput, route, route_before_classification
from services.router.settings import RouterSettings

ANONYMOUS = "+15550009999"  # stands for a lead when a line has no "from"


class _Line(msgspec.Struct, frozen=True, rename={"from_number": "from"}):
    text: str = ""
    from_number: str = ANONYMOUS
    num_media: int = 0


class _Out(msgspec.Struct, frozen=True, omit_defaults=False):
    text: str
    # The classification's (None when a rule decided before classifying).
    language: str | None
    language_confidence: float | None
    language_method: str | None
    sentiment: str | None
    sentiment_score: float | None
    intent: str | None
    intent_score: float | None
    intent_rule: str | None
    evidence: str | None
    decision: str
    rule: str
    status: str


#: The fields of _Out copied from the Classification (language ... evidence).
_CLASSIFIED = [name for name in _Out.__struct_fields__ if name in Classification.__struct_fields__]


HELP = "classify JSON-line messages with the router's classifiers and rules"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subcommand(subparsers, "classify", run, help=HELP, description=__doc__, raw=True)
    parser.add_argument("file", nargs="?", default="-", help="JSON lines file (default: stdin)")
    return parser


def classify_stream(settings: RouterSettings, source: IO[str], sink: IO[str]) -> int:
    """Classify every line of ``source``; returns the number of bad input lines."""
    classifier = LocalClassifier(settings)
    decoder = msgspec.json.Decoder(_Line)
    encoder = msgspec.json.Encoder()
    bad = 0
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            line = decoder.decode(raw)
        except msgspec.DecodeError as exc:
            print(f"line {number}: {exc}", file=sys.stderr)
            bad += 1
            continue
        inp = RouteInput(
            from_number=line.from_number,
            body=line.text,
            num_media=line.num_media,
            owner_numbers=settings.owner_numbers,
        )
        early = route_before_classification(inp)
        c = classifier.classify(line.text) if early is None and line.text.strip() else None
        result = early or route(inp, c, language_threshold=settings.language_threshold)
        classified: dict[str, Any] = {name: getattr(c, name) if c else None for name in _CLASSIFIED}
        out = _Out(
            text=line.text, decision=result.decision, rule=result.rule, status=result.status, **classified
        )
        sink.write(encoder.encode(out).decode() + "\n")
    return bad


def run(args: argparse.Namespace) -> int:
    try:
        settings = load(RouterSettings, section="router", sections=SERVICES)
        if args.file == "-":
            bad = classify_stream(settings, sys.stdin, sys.stdout)
        else:
            with open(args.file, encoding="utf-8") as source:
                bad = classify_stream(settings, source, sys.stdout)
    except (SettingsError, IntentsError) as exc:
        print(f"replyline classify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"replyline classify: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    return 1 if bad else 0
