from datetime import UTC, datetime

import msgspec
import pytest

from libs import events as ev

SAMPLES: list[ev.Event] = [
    ev.InboundReceived(
        thread="15551234567", message_sid="SM1", from_number="+15551234567", to_number="+15550000000",
        body="hola", num_media=1, media=(ev.Media(url="https://x/m.jpg", content_type="image/jpeg"),),
    ),
    ev.InboundRouted(
        thread="15551234567", message_sid="SM1", from_number="+15551234567", decision="draft",
        rule="draft", status="DRAFT_PENDING_APPROVAL", language="es", language_confidence=0.9,
    ),
    ev.DraftDecided(thread="15550000001", action="approve", reviewer="+15550000001", source="sms", ref="4821"),
    ev.DraftCreated(thread="1", draft_id="d1", version=2, ref="4821", to_number="+1", body="hi"),
    ev.DraftRequested(thread="1", request_id="wf:e1:3", workflow_enrollment_id="e1", step_id="offer", to_number="+1", body="hi"),
    ev.DraftApproved(thread="1", draft_id="d1", version=2, to_number="+1", body="hi", reviewer="+2"),
    ev.DraftRejected(thread="1", draft_id="d1", version=1, reviewer="+2"),
    ev.OutboundRequested(thread="1", request_id="r1", to_number="+1", body="b", kind="owner_prompt"),
    ev.OutboundSent(thread="1", outbox_id="o1", to_number="+1", provider_sid="SMx"),
    ev.OutboundFailed(thread="1", outbox_id="o1", to_number="+1", error_code=21610),
    ev.OutboundStatus(thread="1", provider_sid="SMx", status="delivered"),
    ev.ContactOptout(thread="1", number="+1", keyword="STOP"),
    ev.ContactOptin(thread="1", number="+1", keyword="START"),
    ev.ContactPaused(thread="1", number="+1"),
    ev.ContactTakeover(thread="1", number="+1", active=True, actor="+15550000001"),
    ev.HumanReply(thread="1", request_id="human:1", to_number="+1", body="hi", author="+15550000001"),
    ev.ContactTagged(thread="1", number="+1", tag_name="cold_lead"),
    ev.ContactUpdated(thread="1", number="+1", field="first_name", value="Ana"),
    ev.LeadCreated(thread="1", lead_id="l1", phone="+1", fields={"source": "facebook_ad"}),
    ev.CallMissed(thread="1", call_sid="CA" + "0" * 32, from_number="+1", reason="busy"),
    ev.TimerSet(thread="1", timer_id="t1", kind="draft_expiry", fire_at=datetime(2030, 1, 1, tzinfo=UTC)),
    ev.TimerCancel(thread="1", timer_id="t1"),
    ev.TimerFired(thread="1", timer_id="t1", kind="workflow_delay", fire_at=datetime(2030, 1, 1, tzinfo=UTC)),
]  # fmt: skip


def test_every_event_type_has_a_sample() -> None:
    assert {s.tag for s in SAMPLES} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.tag)
def test_round_trip(event: ev.Event) -> None:
    decoded = ev.decode(ev.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)
    assert decoded.subject() == f"{event.tag}.{event.thread}"


def test_old_event_without_new_fields_still_decodes() -> None:
    # As written by a first release: only required fields, no id/occurred_at/optional ones.
    old = b'{"type":"inbound.received","thread":"15551234567","message_sid":"SM9","from_number":"+15551234567","to_number":"+1"}'
    decoded = ev.decode(old)
    assert isinstance(decoded, ev.InboundReceived)
    assert decoded.body == "" and decoded.num_media == 0 and decoded.media == ()
    assert decoded.id  # defaulted


def test_newer_event_with_unknown_fields_decodes() -> None:
    newer = b'{"type":"outbound.status","thread":"1","provider_sid":"SMx","status":"sent","carrier":"x","price":{"usd":1}}'
    decoded = ev.decode(newer)
    assert isinstance(decoded, ev.OutboundStatus) and decoded.status == "sent"


def test_malformed_and_unknown_events_are_rejected() -> None:
    with pytest.raises(msgspec.DecodeError):
        ev.decode(b"not json")
    with pytest.raises(msgspec.ValidationError):
        ev.decode(b'{"type":"no.such","thread":"1"}')
    with pytest.raises(msgspec.ValidationError):
        ev.decode(b'{"type":"inbound.received","thread":"1"}')


def test_dedup_ids_follow_what_makes_the_event_unique() -> None:
    a = ev.InboundReceived(thread="1", message_sid="SM1", from_number="+1", to_number="+2")
    b = ev.InboundReceived(thread="1", message_sid="SM1", from_number="+1", to_number="+2", body="x")
    assert a.id != b.id and a.dedup_id() == b.dedup_id() == "inbound.received:SM1"
    d1 = ev.DraftCreated(thread="1", draft_id="d", version=1, ref="1", to_number="+1", body="x")
    d2 = ev.DraftCreated(thread="1", draft_id="d", version=2, ref="1", to_number="+1", body="x")
    assert d1.dedup_id() != d2.dedup_id()


def test_thread_of() -> None:
    assert ev.thread_of("+15551234567") == "15551234567"
    assert ev.thread_of("whatsapp:+34 600.1") == "whatsapp__34_600_1"
    assert ev.thread_of("") == "unknown"
