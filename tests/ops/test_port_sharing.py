"""A second ingest on a taken port fails loudly unless port sharing is asked for.

A stale ingest left by a killed `replyline dev` used to share port 8080 with the
new one (SO_REUSEPORT was always on) and silently take part of the webhooks.
"""

from __future__ import annotations

import aiohttp
import pytest

from libs.embedded import free_port
from services.ingest.service import PortInUse
from tests.ops.conftest import StartIngest


async def test_a_second_ingest_on_a_taken_port_fails_with_a_clear_message(
    start_ops_ingest: StartIngest,
) -> None:
    port = free_port()
    first = await start_ops_ingest(http_port=port)
    with pytest.raises(PortInUse, match=rf"127\.0\.0\.1:{port}.*already in use.*REPLYLINE_HTTP_REUSE_PORT"):
        await start_ops_ingest(http_port=port)
    # The first one still answers alone.
    async with aiohttp.ClientSession() as http, http.get(f"{first.url}/health/live") as resp:
        assert resp.status == 200


async def test_with_the_opt_in_several_ingests_share_the_port(start_ops_ingest: StartIngest) -> None:
    port = free_port()
    first = await start_ops_ingest(http_port=port, http_reuse_port=True)
    second = await start_ops_ingest(http_port=port, http_reuse_port=True)
    assert first.url == second.url == f"http://127.0.0.1:{port}"
