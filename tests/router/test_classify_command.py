"""`replyline classify`: JSON lines in, the router's verdicts out, fast enough for bulk use."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from replyline.commands.classify import classify_stream
from services.router.settings import RouterSettings

REPO = Path(__file__).resolve().parents[2]
OWNER = "+15550000001"


def run_lines(lines: list[str], settings: RouterSettings | None = None) -> list[dict[str, object]]:
    sink = io.StringIO()
    bad = classify_stream(
        settings or RouterSettings(owner_numbers=(OWNER,)),
        io.StringIO("\n".join(lines) + "\n"),
        sink,
    )
    assert bad == 0
    return [json.loads(line) for line in sink.getvalue().split("\n") if line]


def test_every_field_and_rule() -> None:
    out = run_lines(
        [
            json.dumps({"text": "Hola, ¿tienen citas el sábado?"}),
            json.dumps({"text": "STOP"}),
            json.dumps({"text": "YES 4821", "from": OWNER}),
            json.dumps({"text": "see pic", "num_media": 1}),
            json.dumps({"text": "worst service ever, you never showed up"}),
            json.dumps({"text": "Guten Tag, ich hätte gerne einen Termin für morgen Vormittag"}),
            json.dumps({"text": "my uncle said hi"}),
        ]
    )
    first = out[0]
    assert set(first) >= {
        "language", "language_confidence", "sentiment", "sentiment_score",
        "intent", "intent_score", "intent_rule", "evidence", "language_method", "decision", "rule",
    }  # fmt: skip
    assert (first["language"], first["intent"], first["decision"]) == ("es", "booking", "draft")
    assert [o["rule"] for o in out] == [
        "draft", "opt_out", "owner_command", "media", "complaint", "language",
        "unknown_intent",
    ]  # fmt: skip


def test_bad_lines_are_reported_and_skipped() -> None:
    sink = io.StringIO()
    bad = classify_stream(RouterSettings(), io.StringIO('{"text": "hi"}\nnot json\n'), sink)
    assert bad == 1
    assert len(sink.getvalue().strip().split("\n")) == 1


def test_command_line_uses_router_settings(tmp_path: Path) -> None:
    intents = tmp_path / "intents.yaml"
    intents.write_text("intents:\n  towing:\n    patterns:\n      en: ['\\btow\\b']\n")
    messages = tmp_path / "in.jsonl"
    messages.write_text('{"text": "need a tow asap"}\n')
    env = {"PATH": "/usr/bin:/bin", "REPLYLINE_INTENTS_PATH": str(intents)}
    proc = subprocess.run(
        [sys.executable, "-m", "replyline", "classify", str(messages)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["intent"] == "towing"
