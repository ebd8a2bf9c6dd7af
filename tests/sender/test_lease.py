"""The send lease: a sender whose Postgres session dies mid-send still texts the lead once.

Issue 11 item 6. Two sender instances run against the same database and stream.
While the fake Twilio holds a create request in flight (not yet in its message
list), every sender session is killed with ``pg_terminate_backend`` (what a
failover, a network blip or ``idle_session_timeout`` does). With only a session
lock guarding the row, another worker took it over at once, found nothing in
Twilio's list and sent again. With the lease, nobody may take the SENDING row
over before the first call can no longer be in flight (call timeout + margin on
the database clock); the takeover then finds the first message by reconciling.
"""

from __future__ import annotations

import contextlib
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import DraftApproved, OutboundSent, thread_of
from tests.harness import EventCollector, eventually
from tests.sender.conftest import LEAD, OWNER, StartSender
from testsupport.fakes.twilio_server import FakeTwilio

pytestmark = pytest.mark.timeout(60)

#: Long enough that the held create is released while the first call still waits for it.
CALL_TIMEOUT_S = 4.0
MARGIN_S = 1.5
APP_PREFIX = "replyline-sender-lease-"


def named(database_url: str, name: str) -> str:
    """The same DSN with an application_name, so the test can find the sender's sessions."""
    parts = urlsplit(database_url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}application_name={name}"))


async def terminate_sender_sessions(pool: asyncpg.Pool) -> int:
    killed: int = await pool.fetchval(
        """
        SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE $1
        """,
        APP_PREFIX + "%",
    )
    return killed


async def test_session_killed_while_create_in_flight_sends_exactly_once(
    start_sender: StartSender,
    database_url: str,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    for name in ("a", "b"):
        await start_sender(
            database_url=named(database_url, APP_PREFIX + name),
            twilio_timeout_s=CALL_TIMEOUT_S,
            send_lease_margin_s=MARGIN_S,
            # Eager recovery: the sweep and redelivery look at the row every fraction of a second.
            sweep_interval_s=0.2,
            sweep_grace_s=0.2,
            send_backoff_s=[0.2],
            backoff_s=[0.2, 0.2, 0.2],
            max_deliver=10,
        )
    fake_twilio.hold_creates()
    draft = DraftApproved(
        thread=thread_of(LEAD),
        draft_id=str(uuid.uuid4()),
        version=1,
        to_number=LEAD,
        body="See you Tuesday at 10.",
        reviewer=OWNER,
    )
    await bus.publish(draft)
    await fake_twilio.wait_for_held(1)
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE draft_id = $1", draft.draft_id)
    assert row is not None and row["status"] == "SENDING"
    assert row["lease_until"] is not None and row["lease_owner"]

    assert await terminate_sender_sessions(pool) >= 1
    # Every chance for a second worker to take the row over while the create is in flight
    # (without the lease it does within half a second); then Twilio answers the first call.
    with contextlib.suppress(TimeoutError):
        await fake_twilio.wait_for_held(2, timeout=CALL_TIMEOUT_S / 2)
    fake_twilio.release_creates()

    [sent] = await collector.wait_for(
        OutboundSent, lambda e: e.draft_id == draft.draft_id, timeout=30
    )
    assert len(fake_twilio.creates) == 1, "a second worker sent the message again"
    [message] = fake_twilio.messages
    assert sent.provider_sid == message["sid"]
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1", row["id"])
    assert (row["status"], row["provider_sid"], row["attempts"]) == ("SENT", message["sid"], 1)
    # The first worker could not record its answer (its session was gone): a later lease
    # holder took over after the lease ran out and found the message by reconciling.
    assert row["lease_epoch"] >= 2
    actions = [
        r["action"]
        for r in await pool.fetch("SELECT action FROM audit_log WHERE service = 'sender' ORDER BY id")
    ]
    assert actions.count("outbound.sent") == 1
    assert "outbound.reconciled" in actions
    # Published, and its outbox row deleted: nothing left for the sweeper.
    await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM sender_event_outbox"))
    # Nothing more reaches Twilio once the row is final.
    await collector.assert_none(
        OutboundSent, lambda e: e.draft_id == draft.draft_id and e is not sent, within=1.0
    )
    assert len(fake_twilio.creates) == 1


async def test_worker_whose_lease_was_taken_over_records_nothing(
    start_sender: StartSender,
    bus: Bus,
    collector: EventCollector,
    fake_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    """The fence: once another worker holds a newer epoch, the first one's answer is not written.

    The takeover is staged by hand (the row's epoch is bumped while the create is held),
    standing for a worker that stalled past its lease; the new holder then reconciles.
    """
    await start_sender(sweep_interval_s=0.2, sweep_grace_s=0.2)
    fake_twilio.hold_creates()
    draft = DraftApproved(
        thread=thread_of(LEAD),
        draft_id=str(uuid.uuid4()),
        version=1,
        to_number=LEAD,
        body="Fenced off.",
        reviewer=OWNER,
    )
    await bus.publish(draft)
    await fake_twilio.wait_for_held(1)
    outbox_id = await pool.fetchval(
        """
        UPDATE outbound_messages
        SET lease_epoch = lease_epoch + 1, lease_owner = 'other-worker',
            lease_until = now() + interval '1 hour'
        WHERE draft_id = $1 AND status = 'SENDING'
        RETURNING id
        """,
        draft.draft_id,
    )
    assert outbox_id is not None
    fake_twilio.release_creates()
    await eventually(lambda: fake_twilio.requests[-1].status == 201 and fake_twilio.messages)
    await collector.assert_none(OutboundSent, within=1.0)
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1", outbox_id)
    assert (row["status"], row["provider_sid"], row["lease_owner"]) == (
        "SENDING",
        None,
        "other-worker",
    )

    # The other holder "dies": its lease runs out and the sweep takes the row over.
    await pool.execute("UPDATE outbound_messages SET lease_until = now() WHERE id = $1", outbox_id)
    [sent] = await collector.wait_for(OutboundSent, timeout=15)
    assert len(fake_twilio.creates) == 1
    assert sent.provider_sid == fake_twilio.messages[0]["sid"]
