"""On a 3-node JetStream cluster (R3 streams and KV), kill -9 the PIPELINE stream leader mid-traffic.

Three nats-servers cluster on loopback (free ports, one store each); every service
gets all three URLs (``REPLYLINE_NATS_URL=nats://a,nats://b,nats://c``) and
``REPLYLINE_NATS_REPLICAS=3``. The same traffic as ``test_kill_restart.py`` runs
(leads asking, the owner approving by SMS, opt-outs before and after the draft,
three poisoned events); a few seconds in, the node leading the PIPELINE stream is
SIGKILLed: publishes fail until the two survivors elect a new leader, and the
clients on that node fail over to the others. Later the node comes back and
catches up. The invariants are those of the single-server test: every accepted
MessageSid stored once with one event, every approved draft sent exactly once,
nothing to an opted-out number, only poison in the DLQ, every service alive.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import nats
import pytest

from libs.settings import nats_servers
from tests.faults.running import running_stack
from tests.faults.test_kill_restart import Scenario, check_outcome, publish_poison
from tests.faults.traffic import Follower, Twilio
from tests.harness import eventually
from testsupport.stack import ClusterInfra

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]

REPLICATED = ("PIPELINE", "DLQ", "KV_timers", "KV_heartbeats")


async def _quiet(exc: Exception) -> None:
    """A node is down on purpose."""


async def stream_leaders(url: str) -> dict[str, str]:
    """Stream -> the server name leading it; also checks every stream has 3 replicas."""
    nc = await nats.connect(nats_servers(url), error_cb=_quiet)
    try:
        js = nc.jetstream()
        leaders = {}
        for name in REPLICATED:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3, f"{name}: R{info.config.num_replicas}"
            assert info.cluster is not None and info.cluster.leader
            leaders[name] = info.cluster.leader
        return leaders
    finally:
        await nc.close()


async def all_current(url: str, stream: str) -> bool:
    """Every replica of ``stream`` is back and caught up with its leader."""
    nc = await nats.connect(nats_servers(url), error_cb=_quiet)
    try:
        info = await nc.jetstream().stream_info(stream)
        peers = (info.cluster.replicas or []) if info.cluster else []
        return len(peers) == 2 and all(p.current and not p.offline for p in peers)
    finally:
        await nc.close()


async def kill_leader(sc: Scenario, infra: ClusterInfra, after: float, down_s: float) -> str:
    await asyncio.sleep(after)  # the fault schedule under test, not a wait for a condition
    leader = (await stream_leaders(infra.nats_url))["PIPELINE"]
    node = infra.cluster.node(leader)
    sc.faults.append((f"kill -9 nats {leader} (PIPELINE leader)", time.monotonic()))
    await asyncio.to_thread(node.stop, kill=True)
    await asyncio.sleep(down_s)  # how long the leader stays down (the fault under test)
    sc.faults.append((f"restart nats {leader}", time.monotonic()))
    await asyncio.to_thread(node.start)
    return leader


async def test_cluster_kill_stream_leader_and_restart_it(scale: float) -> None:
    leads = max(30, int(120 * scale))
    rate = 4.0
    async with (
        running_stack(nats_nodes=3, extra_env={"REPLYLINE_NATS_REPLICAS": "3"}) as run,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
    ):
        assert isinstance(run.infra, ClusterInfra)
        url = run.infra.nats_url
        assert len(nats_servers(url)) == 3
        await stream_leaders(url)  # R3 everywhere before any fault
        follower = await Follower().start(url, "PIPELINE", "draft.>")
        optouts = await Follower().start(url, "PIPELINE", "contact.optout.>")
        scenario = Scenario(run, Twilio(run.ingest_url, http), follower)
        run.twilio.on_create = scenario.on_twilio_create
        optouts.on_event = scenario.seen
        await publish_poison(url)
        traffic_s = leads / rate
        await asyncio.gather(
            scenario.traffic(leads, rate),
            kill_leader(scenario, run.infra, after=min(5.0, traffic_s / 3), down_s=8.0),
        )
        assert len(scenario.faults) == 2, scenario.faults
        await check_outcome(run, scenario, leads)
        # The restarted node caught up: the stream is fully replicated again.
        await eventually(lambda: all_current(url, "PIPELINE"), timeout=60, interval=0.5)
        await follower.stop()
        await optouts.stop()
