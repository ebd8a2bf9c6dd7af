"""Drafting: routed lead message -> draft, owner prompt, expiry timer, AI traces."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from libs.bus import Bus
from libs.events import (
    DraftApproved,
    DraftCreated,
    InboundRouted,
    OutboundRequested,
    TimerSet,
    utcnow,
)
from tests.drafter.conftest import (
    LEAD,
    OWNER,
    OWNER_2,
    StartDrafter,
    committed,
    moved,
    routed,
    rows,
    rpc,
    sample,
    settled,
)
from tests.harness import EventCollector
from testsupport.fakes.openai_server import FakeOpenAI

REPLY = "Drain cleaning starts at $129; a technician confirms on site. - Sunny Side Plumbing"


async def test_lead_message_gets_an_llm_draft_and_the_exact_owner_prompt(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    primary.reply(f'"{REPLY}"')  # models like quotes; the drafter strips them
    await start_drafter(**llm_settings)
    llm_labels = {"service": "drafter", "provider": "primary", "model": "gpt-4o-mini"}
    before = {
        "drafts": sample("replyline_drafts_created_total", source="llm"),
        "ok": sample("replyline_llm_requests_total", **llm_labels, outcome="ok"),
        "prompt": sample("replyline_llm_tokens_total", **llm_labels, kind="prompt"),
        "completion": sample("replyline_llm_tokens_total", **llm_labels, kind="completion"),
        "cost": sample("replyline_llm_cost_usd_total", **llm_labels),
    }
    await bus.publish(routed("SM100"))

    (created,) = await collector.wait_for(DraftCreated)
    assert created.body == REPLY
    assert (created.version, created.source, created.to_number) == (1, "llm", LEAD)
    assert created.in_reply_to == "SM100" and created.thread == "15551234567"
    assert created.ref.isdigit() and len(created.ref) == 4

    (prompt,) = await collector.wait_for(OutboundRequested)
    assert prompt.kind == "owner_prompt" and prompt.to_number == OWNER
    assert prompt.body == (
        f'Draft #{created.ref} for +15551234567: "Drain cleaning starts at $129; a technician '
        f'confirms on site. - Sunny Side Plumbing" Reply YES {created.ref}, NO {created.ref}, '
        f"or EDIT {created.ref} <new text>."
    )

    (timer,) = await collector.wait_for(TimerSet)
    assert timer.kind == "draft_expiry"
    assert timer.payload["draft_id"] == created.draft_id and timer.payload["version"] == 1
    assert abs(timer.fire_at - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)

    # The model saw the business profile and the lead's words.
    request = primary.requests[0]
    assert request.model == "gpt-4o-mini"
    assert "Sunny Side Plumbing" in request.messages[0]["content"]
    assert request.messages[-1] == {"role": "user", "content": "How much is drain cleaning?"}

    await committed(pool, created.draft_id)
    (trace,) = await rows(pool, "SELECT * FROM ai_traces")
    assert str(trace["draft_id"]) == created.draft_id
    assert (trace["provider"], trace["model"], trace["ok"]) == ("primary", "gpt-4o-mini", True)
    # The fake counts a token per word, so the counts follow from the texts.
    prompt_words = sum(len(m["content"].split()) for m in request.messages)
    assert trace["prompt_tokens"] == prompt_words
    assert trace["completion_tokens"] == len(REPLY.split())
    assert trace["total_tokens"] == prompt_words + len(REPLY.split())
    expected_cost = (prompt_words * 0.15 + len(REPLY.split()) * 0.60) / 1_000_000
    assert trace["cost_usd"] == Decimal(str(round(expected_cost, 8)))
    assert trace["latency_ms"] >= 0
    assert trace["prompt"] is None  # record_prompts is off by default

    # Metrics: one draft, one successful call, and the fake server's token counts.
    await moved("replyline_drafts_created_total", before["drafts"], 1, source="llm")
    await moved("replyline_llm_requests_total", before["ok"], 1, **llm_labels, outcome="ok")
    await moved("replyline_llm_tokens_total", before["prompt"], prompt_words, **llm_labels,
                kind="prompt")
    await moved("replyline_llm_tokens_total", before["completion"], len(REPLY.split()),
                **llm_labels, kind="completion")
    await moved("replyline_llm_cost_usd_total", before["cost"], round(expected_cost, 8),
                **llm_labels)

    (draft,) = await rows(pool, "SELECT * FROM drafts")
    assert draft["status"] == "DRAFT_PENDING_APPROVAL" and draft["body"] == REPLY
    pending = await rpc(bus, "pending")
    assert [d["ref"] for d in pending["drafts"]] == [created.ref]
    assert pending["drafts"][0]["body"] == REPLY


async def test_every_owner_number_gets_the_prompt(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector
) -> None:
    await start_drafter(owner_numbers=[OWNER, OWNER_2])
    await bus.publish(routed("SM101"))
    prompts = await collector.wait_for(OutboundRequested, count=2)
    assert sorted(p.to_number for p in prompts) == [OWNER, OWNER_2]
    assert len({p.request_id for p in prompts}) == 2


async def test_without_an_endpoint_the_profile_template_is_used_in_the_lead_language(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    service = await start_drafter()  # no drafter_llm_base_url
    assert await service.ctx.probes["llm"]() == {
        "configured": False, "ok": True, "detail": "no LLM endpoint: drafts use templates"
    }
    drafts_before = sample("replyline_drafts_created_total", source="template")
    await bus.publish(routed("SM102", body="¿Cuánto cuesta?", language="es", intent="pricing"))
    (created,) = await collector.wait_for(DraftCreated)
    assert created.source == "template" and created.language == "es"
    await committed(pool, created.draft_id)
    await moved("replyline_drafts_created_total", drafts_before, 1, source="template")
    assert created.body.startswith("¡Gracias por preguntar! Nuestros precios: limpieza de")
    assert "desde $129" in created.body
    assert await rows(pool, "SELECT * FROM ai_traces") == []


async def test_record_prompts_stores_the_prompt_text(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    await start_drafter(**llm_settings, record_prompts=True)
    await bus.publish(routed("SM103", body="Do you fix water heaters?"))
    (created,) = await collector.wait_for(DraftCreated)
    await committed(pool, created.draft_id)
    (trace,) = await rows(pool, "SELECT prompt FROM ai_traces")
    assert trace["prompt"].startswith("[system]\nYou write SMS replies on behalf of Sunny Side")
    assert trace["prompt"].endswith("[user]\nDo you fix water heaters?")


async def test_primary_failure_falls_back_to_the_second_provider(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    fallback: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    primary.fail(500)
    fallback.reply("Hi! Drain cleaning is from $129.")
    service = await start_drafter(**llm_settings)
    probe = await service.ctx.probes["llm"]()
    assert (probe["configured"], probe["ok"]) == (True, True)
    assert probe["providers"]["primary"]["ok"] and probe["providers"]["fallback"]["ok"]
    assert probe["providers"]["fallback"]["base_url"] == fallback.base_url
    primary_error = {"service": "drafter", "provider": "primary", "model": "gpt-4o-mini",
                     "outcome": "error"}
    fallback_ok = {"service": "drafter", "provider": "fallback", "model": "small-model",
                   "outcome": "ok"}
    errors_before = sample("replyline_llm_requests_total", **primary_error)
    ok_before = sample("replyline_llm_requests_total", **fallback_ok)
    await bus.publish(routed("SM104"))
    (created,) = await collector.wait_for(DraftCreated)
    assert created.body == "Hi! Drain cleaning is from $129."
    await committed(pool, created.draft_id)
    traces = await rows(pool, "SELECT * FROM ai_traces ORDER BY id")
    assert [(t["provider"], t["ok"]) for t in traces] == [("primary", False), ("fallback", True)]
    assert traces[0]["error"].startswith("HTTP 500")
    assert traces[0]["total_tokens"] == 0 and traces[0]["cost_usd"] is None
    assert traces[1]["model"] == "small-model" and traces[1]["total_tokens"] > 0
    assert all(str(t["draft_id"]) == created.draft_id for t in traces)
    await moved("replyline_llm_requests_total", errors_before, 1, **primary_error)
    await moved("replyline_llm_requests_total", ok_before, 1, **fallback_ok)


async def test_primary_timeout_falls_back(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    fallback: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    primary.delay(5.0, then="too late")
    fallback.reply("On time from the fallback.")
    await start_drafter(**llm_settings, drafter_llm_timeout_s=0.5)
    await bus.publish(routed("SM105"))
    (created,) = await collector.wait_for(DraftCreated)
    assert created.body == "On time from the fallback."
    await committed(pool, created.draft_id)
    (failed,) = await rows(pool, "SELECT * FROM ai_traces WHERE NOT ok")
    assert failed["error"] == "timeout" and failed["latency_ms"] >= 450


async def test_both_providers_failing_sends_the_message_for_review_with_an_owner_alert(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    fallback: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    primary.fail(503)
    fallback.malformed("not_json")
    await start_drafter(**llm_settings)
    await bus.publish(routed("SM106", body="Can someone come today?"))

    (alert,) = await collector.wait_for(OutboundRequested)
    assert alert.kind == "owner_alert" and alert.to_number == OWNER
    ref = alert.body.split()[0].lstrip("#")
    assert alert.body == (
        f'#{ref} Could not draft a reply for +15551234567 (AI unavailable). They wrote: "Can someone '
        'come today?" It is in the manual-intervention queue. Answer from the business number: '
        f"SEND {ref} <your text>."
    )
    await collector.assert_none(DraftCreated, within=0.5)
    traces = await settled(pool, "SELECT * FROM ai_traces ORDER BY id", count=2)
    assert [(t["provider"], t["ok"], t["draft_id"]) for t in traces] == [
        ("primary", False, None),
        ("fallback", False, None),
    ]
    queue = await rpc(bus, "queue")
    (item,) = queue["items"]
    assert (item["reason"], item["number"], item["body"]) == (
        "llm_failed", LEAD, "Can someone come today?"
    )
    assert "HTTP 503" in item["detail"]


async def test_needs_review_goes_to_the_manual_queue_with_an_alert(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await start_drafter()
    await bus.publish(
        routed("SM107", body="This is the worst service ever", decision="needs_review",
               rule="7_negative_sentiment", intent="complaint")
    )
    (alert,) = await collector.wait_for(OutboundRequested)
    assert alert.kind == "owner_alert"
    ref = alert.body.split()[0].lstrip("#")
    assert alert.body == (
        f'#{ref} Needs review (7_negative_sentiment): +15551234567 wrote "This is the worst service '
        f'ever" No reply was drafted. Answer from the business number: SEND {ref} <your text>.'
    )
    await collector.assert_none(DraftCreated, within=0.3)
    (item,) = await settled(pool, "SELECT * FROM manual_queue")
    assert (await rpc(bus, "queue"))["items"][0]["id"] == item["id"]
    assert item["reason"] == "needs_review" and item["detail"] == "7_negative_sentiment"


async def test_other_routing_decisions_are_ignored(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await start_drafter()
    for sid, decision in [("SM108", "log_only"), ("SM109", "opt_out"), ("SM110", "duplicate")]:
        await bus.publish(routed(sid, decision=decision))
    # A marker on the same thread: the consumer handles a thread's events in order.
    await bus.publish(routed("SM111"))
    await collector.wait_for(DraftCreated)
    assert len(collector.of_type(DraftCreated)) == 1
    assert await rows(pool, "SELECT * FROM manual_queue") == []


async def test_a_redelivered_routed_event_does_not_draft_twice(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    await start_drafter(**llm_settings)
    event = routed("SM112")
    await bus.publish(event)
    await collector.wait_for(DraftCreated)
    # The same inbound message again, past the stream's dedup (as after a replay).
    again = InboundRouted(**{**_fields(event), "id": "another-event-id"})
    await bus.publish(again, msg_id="replayed-SM112")
    await bus.publish(routed("SM113"))  # same thread, so handled after the replay
    await collector.wait_for(DraftCreated, lambda e: e.in_reply_to == "SM113")
    assert len(await rows(pool, "SELECT * FROM drafts WHERE in_reply_to = 'SM112'")) == 1
    assert len(collector.of_type(DraftCreated)) == 2
    assert len(primary.requests) == 2  # SM112 once, SM113 once


async def test_history_of_the_thread_is_given_to_the_model(
    start_drafter: StartDrafter,
    llm_settings: dict[str, Any],
    primary: FakeOpenAI,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    from tests.drafter.conftest import owner_says

    primary.reply("Yes, we repair water heaters.").reply("It is a $95 diagnostic.")
    await start_drafter(**llm_settings)
    await bus.publish(routed("SM114", body="Do you repair water heaters?"))
    (first,) = await collector.wait_for(DraftCreated)
    await committed(pool, first.draft_id)
    await bus.publish(owner_says("approve", first.ref))
    await collector.wait_for(DraftApproved)
    await settled(pool, "SELECT 1 FROM drafts WHERE status = 'APPROVED_TO_SEND'")
    await bus.publish(routed("SM115", body="How much?"))
    await collector.wait_for(DraftCreated, lambda e: e.in_reply_to == "SM115")
    messages = primary.requests[1].messages
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "Do you repair water heaters?"),
        ("assistant", "Yes, we repair water heaters."),
        ("user", "How much?"),
    ]


def _fields(event: InboundRouted) -> dict[str, Any]:
    import msgspec

    return msgspec.structs.asdict(event)


async def test_an_older_message_arriving_after_a_newer_one_is_not_drafted(
    start_drafter: StartDrafter, bus: Bus, collector: EventCollector, pool: asyncpg.Pool
) -> None:
    await start_drafter()
    newer = msgspec.structs.replace(routed("SM121", body="Actually, Saturday works"),
                                    stream_seq=20)
    older = msgspec.structs.replace(routed("SM120", body="Can you come Friday?"), stream_seq=10)
    await bus.publish(newer)
    (created,) = await collector.wait_for(DraftCreated)
    await committed(pool, created.draft_id)
    await bus.publish(older)

    (item,) = await settled(pool, "SELECT * FROM manual_queue")
    assert (item["message_sid"], item["reason"]) == ("SM120", "needs_review")
    assert item["detail"] == "arrived after a newer message of the thread was drafted"
    await collector.assert_none(DraftCreated, lambda e: e.in_reply_to == "SM120", within=0.3)
    (draft,) = await rows(pool, "SELECT in_reply_to, inbound_seq FROM drafts")
    assert draft == {"in_reply_to": "SM121", "inbound_seq": 20}
