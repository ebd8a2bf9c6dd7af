"""The router on real NATS/Postgres: natural and polite opt-outs, and probable revocations."""

from __future__ import annotations

import pytest

from libs.consent_keywords import consent_event_id
from libs.events import ContactOptout, DraftCreated
from tests.router.conftest import Pipeline, StartRouter, received

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("STOP PLEASE", "stop"), ("ARRET", "arret"), ("please stop texting me", "stop texting me")],
)
async def test_polite_french_and_natural_opt_outs(
    start_router: StartRouter, pipeline: Pipeline, body: str, keyword: str
) -> None:
    await start_router()
    lead = "+15553330001"
    event = received(body, lead=lead)
    await pipeline.send(event)
    routed = await pipeline.routed(event.message_sid)
    assert (routed.decision, routed.rule) == ("opt_out", "opt_out")
    (optout,) = await pipeline.collector.wait_for(ContactOptout)
    # The same event (same id, so the same Nats-Msg-Id) ingest publishes for it.
    assert (optout.id, optout.keyword, optout.number) == (
        consent_event_id("optout", event.message_sid),
        keyword,
        lead,
    )
    assert optout.received_at == event.received_at
    controls = await pipeline.controls(lead)
    assert controls is not None and controls["opted_out"]


async def test_probable_revocation_goes_to_review_never_a_draft(
    start_router: StartRouter, pipeline: Pipeline
) -> None:
    await start_router()
    event = received("I don't want this", lead="+15553330002")
    await pipeline.send(event)
    routed = await pipeline.routed(event.message_sid)
    assert (routed.decision, routed.rule, routed.status) == ("needs_review", "optout_maybe", "NEEDS_REVIEW")
    controls = await pipeline.controls("+15553330002")
    assert controls is not None and not controls["opted_out"]
    await pipeline.collector.assert_none(ContactOptout, within=0.3)
    await pipeline.collector.assert_none(DraftCreated, within=0.1)
