"""The whole stack for a fault test: own servers, five service processes, fake Twilio."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from libs.embedded import free_port
from testsupport.fakes.twilio_server import FakeTwilio
from testsupport.stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BUSINESS,
    SERVICES,
    ClusterInfra,
    Infra,
    Stack,
    ingest_env,
)


@dataclass
class Running:
    infra: Infra
    stack: Stack
    twilio: FakeTwilio
    ingest_url: str


def fault_env(ingest_port: int, twilio_url: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    common = {
        # Short, but with a retry budget (0.5+1+2+4+8 s) longer than any injected outage,
        # so a healthy event never exhausts its deliveries and the DLQ keeps only poison.
        "REPLYLINE_BACKOFF_S": "0.5,1,2,4,8",
        "REPLYLINE_MAX_DELIVER": "6",
        # A killed consumer's in-flight messages come back after ack_wait.
        "REPLYLINE_ACK_WAIT_S": "8",
        "REPLYLINE_DRAIN_GRACE_S": "3",
    }
    per = {
        "ingest": ingest_env(ingest_port, REPLYLINE_PUBLISH_TIMEOUT_S="3"),
        "sender": {
            "REPLYLINE_SENDER_TRANSPORT": "twilio", "REPLYLINE_TWILIO_API_BASE_URL": twilio_url,
            "REPLYLINE_TWILIO_FROM_NUMBER": BUSINESS,
            "REPLYLINE_QUIET_HOURS_START": "00:00", "REPLYLINE_QUIET_HOURS_END": "00:00",
            "REPLYLINE_SWEEP_INTERVAL_S": "2", "REPLYLINE_SWEEP_GRACE_S": "5",
            "REPLYLINE_TWILIO_TIMEOUT_S": "5",
            # Send lease 5 + 2 s: an interrupted send is taken over within the settle window.
            "REPLYLINE_SEND_LEASE_MARGIN_S": "2",
        },
        # Bursts off: each fault scenario expects a draft per message, at once.
        "drafter": {"REPLYLINE_LLM_BASE_URL": "", "REPLYLINE_BURST_DEBOUNCE_S": "0"},
    }  # fmt: skip
    return common, per


@contextlib.asynccontextmanager
async def running_stack(
    services: tuple[str, ...] = SERVICES,
    *,
    nats_nodes: int = 1,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Running]:
    """The stack on one nats-server, or on a JetStream cluster of ``nats_nodes`` servers."""
    root = Path(tempfile.mkdtemp(prefix="replyline-faults-"))
    infra = ClusterInfra(root, nats_nodes) if nats_nodes > 1 else Infra(root)
    twilio = FakeTwilio(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    stack: Stack | None = None
    keep = False
    try:
        await infra.start()
        await twilio.start()
        port = free_port()
        common, per = fault_env(port, twilio.base_url)
        common.update(extra_env or {})
        stack = Stack(infra, services, per_service=per, common=common)
        await stack.start()
        yield Running(infra, stack, twilio, f"http://127.0.0.1:{port}")
    except BaseException:
        keep = True  # the service logs explain the failure
        print(f"fault test artifacts kept in {root}")
        raise
    finally:
        if stack is not None:
            await stack.stop()
        await twilio.close()
        infra.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
