"""inbound.routed copies the message, the routing result and the scores by field name."""

from __future__ import annotations

from libs.events import InboundRouted, thread_of
from services.router.handlers import derived_id, routed_event
from services.router.rules import RouteResult
from tests.router.conftest import BUSINESS, received
from tests.router.test_rules import LEAD, clf


def test_routed_event_carries_the_message_the_result_and_the_scores() -> None:
    event = received("can I book friday?", lead=LEAD)
    result = RouteResult(decision="draft", rule="draft", status="DRAFT_PENDING_APPROVAL", keyword="x")
    c = clf(source="llm", intent_rule="profile_pattern", evidence="book")
    routed = routed_event(event, 42, thread_of(LEAD), result, c)
    assert routed == InboundRouted(
        id=derived_id("routed", event.message_sid),
        thread=thread_of(LEAD),
        occurred_at=routed.occurred_at,  # its own time
        message_sid=event.message_sid,
        from_number=LEAD,
        to_number=BUSINESS,
        body="can I book friday?",
        decision="draft",
        rule="draft",
        status="DRAFT_PENDING_APPROVAL",
        language="en",
        language_confidence=0.95,
        sentiment="NEUTRAL",
        sentiment_score=0.0,
        intent="booking",
        intent_score=0.8,
        stream_seq=42,
    )


def test_routed_event_without_a_classification_has_no_scores() -> None:
    event = received("STOP", lead=LEAD)
    result = RouteResult(decision="opt_out", rule="opt_out", status="RECEIVED", keyword="STOP")
    routed = routed_event(event, 7, thread_of(LEAD), result, None)
    assert (routed.decision, routed.rule, routed.status, routed.stream_seq) == (
        "opt_out",
        "opt_out",
        "RECEIVED",
        7,
    )
    assert routed.language is None and routed.intent is None and routed.intent_score is None
    assert routed.id == derived_id("routed", event.message_sid) and routed.body == "STOP"
