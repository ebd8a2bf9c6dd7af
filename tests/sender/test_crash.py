"""Kill the sender between Twilio's acceptance and the recording of the result.

The sender runs as a real process (``python -m services.sender``); the fake
Twilio SIGKILLs it from inside the create request, after storing the message and
before answering. A restarted sender must reconcile against Twilio's message list
and record the existing message instead of sending a second one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.bus import Bus
from libs.events import DraftApproved, OutboundSent, thread_of
from tests.conftest import REPO_ROOT
from tests.harness import EventCollector, eventually
from tests.sender.conftest import FROM, LEAD, OWNER, PUBLIC
from testsupport.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class SenderProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log = log_path.open("ab")  # both runs' output, for post-mortems
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.sender",
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            await self.kill()


@pytest.fixture
async def sender_env(
    nats_url: str, database_url: str, namespace: str, fake_twilio: FakeTwilio
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLYLINE_")}
    env.update(
        {
            "REPLYLINE_NATS_URL": nats_url,
            "REPLYLINE_DATABASE_URL": database_url,
            "REPLYLINE_NAMESPACE": namespace,
            "REPLYLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "REPLYLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "REPLYLINE_TWILIO_FROM_NUMBER": FROM,
            "REPLYLINE_TWILIO_API_BASE_URL": fake_twilio.base_url,
            "REPLYLINE_PUBLIC_BASE_URL": PUBLIC,
            "REPLYLINE_OWNER_NUMBERS": OWNER,
            # The real clock decides here: no quiet hours, whatever time the test runs.
            "REPLYLINE_QUIET_HOURS_START": "00:00",
            "REPLYLINE_QUIET_HOURS_END": "00:00",
            "REPLYLINE_ACK_WAIT_S": "3",
            "REPLYLINE_SWEEP_INTERVAL_S": "1",
            "REPLYLINE_SWEEP_GRACE_S": "1",
            # The restarted sender takes the SENDING row over once its lease (call timeout +
            # margin) has run out: keep that short so the test runs in seconds.
            "REPLYLINE_TWILIO_TIMEOUT_S": "2",
            "REPLYLINE_SEND_LEASE_MARGIN_S": "1",
            "REPLYLINE_LOG_FORMAT": "console",
        }
    )
    return env


@pytest.fixture
async def sender_process(
    sender_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[SenderProcess]:
    process = SenderProcess(sender_env, tmp_path / "sender.log")
    yield process
    await process.stop()
    process.log.close()


@pytest.mark.parametrize("recovery", ["sweep", "redelivery"])
async def test_killed_between_call_and_record_sends_exactly_once(
    recovery: str,
    sender_process: SenderProcess,
    fake_twilio: FakeTwilio,
    bus: Bus,
    collector: EventCollector,
    pool: asyncpg.Pool,
) -> None:
    killed = asyncio.Event()

    async def kill_sender(_resource: dict[str, object]) -> None:
        # Twilio has stored the message; the sender dies before it reads the answer.
        if not killed.is_set():
            await sender_process.kill()
            killed.set()

    fake_twilio.on_create = kill_sender
    if recovery == "redelivery":
        # No sweep: only JetStream's redelivery of the unacked event can finish the job.
        sender_process.env["REPLYLINE_SWEEP_INTERVAL_S"] = "600"
    draft = DraftApproved(
        thread=thread_of(LEAD),
        draft_id=str(uuid.uuid4()),
        version=1,
        to_number=LEAD,
        body="See you Tuesday at 10.",
        reviewer=OWNER,
    )
    await sender_process.start()
    await bus.publish(draft)
    async with asyncio.timeout(60):
        await killed.wait()

    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE draft_id = $1", draft.draft_id)
    assert row is not None
    # Written before the call, never completed: exactly the window under test.
    assert (row["status"], row["provider_sid"]) == ("SENDING", None)
    assert len(fake_twilio.messages) == 1

    await sender_process.start()
    [sent] = await collector.wait_for(OutboundSent, timeout=60)

    assert len(fake_twilio.creates) == 1, "the restarted sender must not resend"
    assert sent.provider_sid == fake_twilio.messages[0]["sid"]
    row = await pool.fetchrow("SELECT * FROM outbound_messages WHERE id = $1", row["id"])
    assert (row["status"], row["provider_sid"]) == ("SENT", sent.provider_sid)
    actions = await pool.fetch("SELECT action FROM audit_log WHERE service = 'sender'")
    assert "outbound.reconciled" in [a["action"] for a in actions]
    # Twilio was asked for the lead's recent messages before anything else happened.
    lists = [r for r in fake_twilio.requests if r.method == "GET"]
    assert lists and ("To", LEAD) in lists[0].query
    # Published, and its outbox row deleted: nothing left for the sweeper.
    await eventually(lambda: pool.fetchval("SELECT count(*) = 0 FROM sender_event_outbox"))
