"""NATS authorization: a real nats-server started with deploy/nats/nats-server.conf.

The same file compose.yaml runs, with test passwords in the environment. A
service's credentials may publish only the events that service owns (a router
cannot forge ``draft.approved``), and every service still does its whole job
with its own credentials: the full loop from a signed webhook to the approved
reply, RPC and health included, without a single permissions violation.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.errors import Error as NatsError

from libs.bus import Bus
from libs.embedded import EmbeddedNats
from libs.events import ContactOptout, DraftApproved, DraftCreated, OutboundSent
from libs.settings import CommonSettings
from services import SERVICES
from tests.harness import EventCollector, eventually
from tests.ops.conftest import REPO_ROOT, StartFleet, StartIngest
from testsupport.webhooks import inbound_form

CONFIG = REPO_ROOT / "deploy" / "nats" / "nats-server.conf"
USERS = (*SERVICES, "operator")
PASSWORDS = {user: f"test-{user}-password" for user in USERS}
LEAD = "+12125550177"
LEAD_2 = "+12125550178"


def creds(user: str) -> dict[str, str]:
    return {"nats_user": user, "nats_password": PASSWORDS[user]}


@pytest.fixture(scope="module")
def auth_nats() -> Iterator[EmbeddedNats]:
    store = Path(tempfile.mkdtemp(prefix="replyline-test-nats-auth-"))
    env = {f"REPLYLINE_NATS_{user.upper()}_PASSWORD": pw for user, pw in PASSWORDS.items()}
    server = EmbeddedNats(store, config_file=CONFIG, env=env)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(store, ignore_errors=True)


# The shipped config speaks the production subjects: no test namespace, so this
# module has its own server instead of the session's.
@pytest.fixture
def nats_url(auth_nats: EmbeddedNats) -> str:
    return auth_nats.url


@pytest.fixture
def namespace() -> str:
    return ""


@pytest.fixture
async def bus(make_settings: Callable[..., CommonSettings]) -> AsyncIterator[Bus]:
    """The operator's connection (declares the streams, watches every event)."""
    b = await Bus.connect(make_settings(**creds("operator")), "tests")
    await b.ensure_streams()
    # Another test of this module may have left events behind on the shared server.
    await b.js.purge_stream(b.stream)
    yield b
    await b.close()


def violations(server: EmbeddedNats) -> list[str]:
    return [line for line in server.log_file.read_text().splitlines() if "Violation" in line]


async def _publish_as(url: str, user: str, subject: str) -> tuple[bool, list[str]]:
    """Publish one JetStream message as ``user``: (stored?, async errors the server sent)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        url, user=user, password=PASSWORDS[user], error_cb=on_error, inbox_prefix=f"_INBOX.{user}"
    )
    try:
        try:
            await nc.jetstream().publish(subject, b"{}", timeout=1.0)
        except (NatsError, TimeoutError):
            stored = False
        else:
            stored = True
        await nc.flush()
        if not stored:
            # A refused publish earns a -ERR, which comes asynchronously.
            await eventually(lambda: errors, timeout=5)
        return stored, errors
    finally:
        await nc.close()


async def test_only_the_drafter_may_publish_draft_approved(auth_nats: EmbeddedNats, bus: Bus) -> None:
    subject = "draft.approved.15551230000"
    stored, errors = await _publish_as(auth_nats.url, "router", subject)
    assert not stored
    assert any("permissions violation" in e.lower() and subject in e for e in errors), errors
    assert any("user:router" in line and subject in line for line in violations(auth_nats))
    for user in ("ingest", "sender", "scheduler"):
        stored, _ = await _publish_as(auth_nats.url, user, subject)
        assert not stored, user
    info = await bus.js.stream_info(bus.stream, subjects_filter=subject)
    assert not info.state.subjects

    stored, errors = await _publish_as(auth_nats.url, "drafter", subject)
    assert stored and errors == []
    # Without credentials, nothing at all.
    with pytest.raises(NatsError):
        await nats.connect(auth_nats.url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_ingest_alone_publishes_inbound_received(auth_nats: EmbeddedNats, bus: Bus) -> None:
    subject = "inbound.received.15551230000"
    for user in ("router", "drafter", "sender", "scheduler"):
        stored, _ = await _publish_as(auth_nats.url, user, subject)
        assert not stored, user
    stored, _ = await _publish_as(auth_nats.url, "ingest", subject)
    assert stored


async def test_every_service_does_its_job_with_its_own_credentials(
    auth_nats: EmbeddedNats,
    bus: Bus,
    start_fleet: StartFleet,
    start_ops_ingest: StartIngest,
    admin_token: Callable[[], Any],
) -> None:
    before = len(violations(auth_nats))
    collector = await EventCollector(bus, ">").start()
    try:
        ingest = await start_ops_ingest(**creds("ingest"))
        for name in ("router", "drafter", "scheduler"):
            await start_fleet(name, **creds(name))
        # Lead-facing sends now, whatever the time of day in New York.
        await start_fleet("sender", quiet_hours_start="00:00", quiet_hours_end="00:00", **creds("sender"))
        token = await admin_token()

        form = inbound_form("Hi, how much for a haircut?", from_number=LEAD)
        status, _ = await ingest.post_twilio("/twilio/sms", form)
        assert status == 200
        # ingest -> router -> drafter (which sets its expiry timer in the scheduler's KV)
        (draft,) = await collector.wait_for(DraftCreated, lambda e: e.to_number == LEAD, timeout=20)
        # request/reply: ingest asks the drafter (pending drafts) and the scheduler (workflows)
        status, body = await ingest.request("GET", "/api/drafts", token=token)
        assert status == 200 and draft.draft_id in str(body), body
        status, body = await ingest.request("GET", "/api/workflows", token=token)
        assert status == 200, body
        # decision -> drafter approves -> sender sends to the lead
        status, body = await ingest.request("POST", f"/api/drafts/{draft.ref}/approve", token=token)
        assert status in (200, 202), body
        await collector.wait_for(DraftApproved, lambda e: e.draft_id == draft.draft_id, timeout=20)
        await collector.wait_for(OutboundSent, lambda e: e.to_number == LEAD, timeout=20)

        # heartbeats (KV), consumer lag (JS API) and micro all work for every service
        async def healthy() -> bool:
            status, _ = await ingest.request("GET", "/health/system", token=token)
            return status == 200

        await eventually(healthy, timeout=20, interval=0.3)

        # A STOP: ingest records it at the webhook (contact.optout), the router too.
        status, _ = await ingest.post_twilio("/twilio/sms", inbound_form("STOP", from_number=LEAD_2))
        assert status == 200
        await collector.wait_for(ContactOptout, lambda e: e.thread == LEAD_2.lstrip("+"), timeout=20)
    finally:
        await collector.stop()
    assert violations(auth_nats)[before:] == []


async def test_the_server_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    env = {f"REPLYLINE_NATS_{u.upper()}_PASSWORD": pw for u, pw in PASSWORDS.items() if u != "sender"}
    server = EmbeddedNats(tmp_path, config_file=CONFIG, env=env)
    with pytest.raises(TimeoutError):
        server.start(timeout=3)


def test_compose_runs_nats_with_that_config_and_keeps_4222_off_the_host() -> None:
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    services = compose["services"]
    nats_service = services["nats"]
    assert "ports" not in nats_service
    assert "./deploy/nats:/etc/nats:ro" in nats_service["volumes"]
    entrypoint = (REPO_ROOT / "deploy" / "nats" / "entrypoint.sh").read_text()
    assert "-c /etc/nats/nats-server.conf" in entrypoint
    assert nats_service["entrypoint"][-1] == "/etc/nats/entrypoint.sh"
    assert set(nats_service["secrets"]) == {f"nats_{u}_password" for u in USERS}
    for name in SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["REPLYLINE_NATS_USER"] == name
        assert env["REPLYLINE_NATS_PASSWORD_FILE"] == "/run/secrets/nats_password"
        # Its own password only: never another service's.
        assert service["secrets"] == [{"source": f"nats_{name}_password", "target": "nats_password"}]
    operator = yaml.safe_load((REPO_ROOT / "compose.operator.yaml").read_text())
    assert operator["services"]["nats"]["ports"] == ["127.0.0.1:4222:4222"]
