"""The request/reply contract (libs/rpc.py) as NATS micro exposes it, against the real scheduler."""

from __future__ import annotations

import json

import msgspec

from libs import rpc
from libs.bus import Bus
from tests.scheduler.conftest import Schedulers


async def test_micro_info_lists_the_endpoints_and_errors_carry_micro_headers(
    schedulers: Schedulers, bus: Bus
) -> None:
    await schedulers.start()
    info = json.loads((await bus.nc.request("$SRV.INFO.replyline-scheduler", b"", timeout=5)).data)
    listed = {e["name"]: e["subject"] for e in info["endpoints"]}
    declared = [e for e in rpc.ENDPOINTS if e.service == "scheduler"]
    assert len(declared) == 10
    for endpoint in declared:
        assert listed[endpoint.name] == endpoint.subject(bus.prefix)
    assert listed["ready"] == f"{bus.prefix}svc.scheduler.ready"

    # A declared refusal: micro's error headers, details in the body.
    export = rpc.WORKFLOW_EXPORT.subject(bus.prefix)
    reply = await bus.nc.request(export, msgspec.json.encode(rpc.ExportWorkflow(name="nope")), timeout=5)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "404"
    assert reply.headers["Nats-Service-Error"] == rpc.NOT_FOUND
    # A request that is not the endpoint's Struct: 400, and micro counts it as an error.
    reply = await bus.nc.request(export, b'{"format": "yaml"}', timeout=5)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    assert reply.headers["Nats-Service-Error"].startswith("bad request: ")
    stats = json.loads((await bus.nc.request("$SRV.STATS.replyline-scheduler", b"", timeout=5)).data)
    counted = {e["name"]: e for e in stats["endpoints"]}[rpc.WORKFLOW_EXPORT.name]
    assert counted["num_requests"] == 2 and counted["num_errors"] == 1

    # The typed client turns the headers back into the declared refusal or a failure.
    client = rpc.RpcClient(bus.nc, bus.prefix, 5)
    try:
        await client.call(rpc.WORKFLOW_EXPORT, rpc.ExportWorkflow(name="nope"))
    except rpc.Refused as refused:
        assert (refused.code, refused.reason) == (404, rpc.NOT_FOUND)
    else:
        raise AssertionError("an unknown workflow must be refused")
