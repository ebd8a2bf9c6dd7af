"""DESIGN.md routing rules 2-9: each rule fires, and earlier rules win over later ones."""

from __future__ import annotations

from typing import Any

import pytest

from libs.owner_protocol import Command
from services.router.classification import Classification
from services.router.rules import RouteInput, RouteResult, route, route_before_classification

OWNER = "+15550000001"
LEAD = "+15551234567"


def clf(**overrides: object) -> Classification:
    values: dict[str, object] = {
        "language": "en",
        "language_confidence": 0.95,
        "language_judged": True,
        "language_method": "detected",
        "sentiment": "NEUTRAL",
        "sentiment_score": 0.0,
        "intent": "booking",
        "intent_score": 0.8,
    }
    values.update(overrides)
    return Classification(**values)  # type: ignore[arg-type]


def decide(body: str = "can I book friday?", c: Classification | None = None, **kw: Any) -> RouteResult:
    kw.setdefault("from_number", LEAD)
    inp = RouteInput(body=body, owner_numbers=(OWNER,), **kw)
    return route(inp, c if c is not None else clf(), language_threshold=0.7)


def test_owner_number_is_a_command_never_a_draft() -> None:
    result = decide("YES 4821", from_number=OWNER)
    assert (result.decision, result.rule, result.status) == (
        "owner_command",
        "owner_command",
        "RECEIVED",
    )
    assert isinstance(result.command, Command)
    assert (result.command.kind, result.command.ref) == ("approve", "4821")


def test_owner_wins_even_over_keywords_and_pause() -> None:
    assert decide("STOP", from_number=OWNER, paused=True).decision == "owner_command"


@pytest.mark.parametrize("body", ["STOP", "stop.", "Unsubscribe", " QUIT ", "PARAR", "Baja", "no más"])
def test_opt_out_keywords(body: str) -> None:
    result = decide(body)
    assert (result.decision, result.rule) == ("opt_out", "opt_out")


@pytest.mark.parametrize(
    ("body", "decision"),
    [
        ("START", "opt_in"),
        ("unstop", "opt_in"),
        ("HELP", "help"),
        ("Ayuda", "help"),
        ("info", "help"),
    ],
)
def test_opt_in_and_help(body: str, decision: str) -> None:
    assert decide(body).decision == decision


def test_keyword_inside_a_sentence_is_not_a_command() -> None:
    assert decide("please cancel my appointment tomorrow").decision == "draft"


def test_twilio_opt_out_type_wins() -> None:
    assert decide("stop texting me please", opt_out_type="STOP").decision == "opt_out"


def test_opted_out_thread_gets_no_draft_but_can_opt_back_in() -> None:
    assert (decide(opted_out=True).decision, decide(opted_out=True).rule) == (
        "log_only",
        "opted_out",
    )
    assert decide("START", opted_out=True).decision == "opt_in"


def test_paused_thread_logs_only() -> None:
    result = decide(paused=True)
    assert (result.decision, result.rule, result.status) == ("log_only", "paused", "RECEIVED")


def test_stale_message_is_logged_but_stop_is_still_honoured() -> None:
    assert decide(stale=True).rule == "stale"
    assert decide("STOP", stale=True).decision == "opt_out"
    assert decide("START", stale=True).rule == "stale"


def test_media_and_empty_body_need_review() -> None:
    assert decide("look at this", num_media=1).rule == "media"
    assert decide("   ").rule == "empty_body"
    assert decide("   ").status == "NEEDS_REVIEW"


def test_language_rule() -> None:
    assert decide(c=clf(language="fr", language_confidence=0.99)).rule == "language"
    assert decide(c=clf(language_confidence=0.55)).rule == "language"
    # A short text's confidence is not judged against the threshold.
    short = clf(language_confidence=0.55, language_judged=False, language_method="short_default")
    assert decide(c=short).rule == "draft"


def test_sentiment_then_intent_then_draft() -> None:
    assert decide(c=clf(sentiment="NEGATIVE", intent="unknown")).rule == "negative_sentiment"
    assert decide(c=clf(intent="unknown")).rule == "unknown_intent"
    result = decide(c=clf(sentiment="POSITIVE"))
    assert (result.decision, result.status) == ("draft", "DRAFT_PENDING_APPROVAL")


def test_classification_needed_only_for_rules_6_to_9() -> None:
    inp = RouteInput(from_number=LEAD, body="hi", owner_numbers=(OWNER,))
    assert route_before_classification(inp) is None
    with pytest.raises(ValueError):
        route(inp, None, language_threshold=0.7)
    media = RouteInput(from_number=LEAD, body="", num_media=2)
    assert route(media, None, language_threshold=0.7).rule == "media"


def test_spam_and_complaint_go_to_review_whatever_the_sentiment() -> None:
    """Issue 12: spam is never drafted; a complaint is reviewed even when it reads positive."""
    for sentiment in ("POSITIVE", "NEUTRAL", "NEGATIVE"):
        spam = decide(c=clf(intent="spam", sentiment=sentiment))
        assert (spam.decision, spam.rule, spam.status) == ("needs_review", "spam", "NEEDS_REVIEW")
        complaint = decide(c=clf(intent="complaint", sentiment=sentiment))
        assert (complaint.decision, complaint.rule) == ("needs_review", "complaint")
    # The language rule still comes first.
    assert decide(c=clf(intent="spam", language="fr")).rule == "language"


def test_acknowledgement_is_logged_not_drafted() -> None:
    result = decide("ok thanks", c=clf(intent="acknowledgement", sentiment="POSITIVE"))
    assert (result.decision, result.rule, result.status) == ("log_only", "acknowledgement", "RECEIVED")
    # A negative "ok" is still a person's job.
    assert decide(c=clf(intent="acknowledgement", sentiment="NEGATIVE")).rule == "negative_sentiment"
