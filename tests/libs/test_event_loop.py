"""Service processes run on uvloop unless REPLYLINE_EVENT_LOOP=asyncio says otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testsupport.stack import ServiceProcess


def ready_line(log: Path) -> dict[str, object]:
    """The service's start-up log line (JSON, one per start)."""
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "service_ready":
                return dict(record)
    raise AssertionError(f"no service_ready line in {log}:\n{log.read_text()}")


@pytest.mark.parametrize(
    ("setting", "loop_class"),
    [(None, "uvloop.Loop"), ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop")],
)
async def test_a_service_process_runs_on_the_chosen_event_loop(
    nats_url: str, database_url: str, namespace: str, tmp_path: Path, setting: str | None, loop_class: str
) -> None:
    # `python -m services.sender` with nothing but where its servers are (and INFO logs,
    # so the ready line is written): the default is the one production gets.
    env = {
        "REPLYLINE_NATS_URL": nats_url,
        "REPLYLINE_DATABASE_URL": database_url,
        "REPLYLINE_NAMESPACE": namespace,
        "REPLYLINE_LOG_LEVEL": "INFO",
        "REPLYLINE_LOG_FORMAT": "json",
    }
    if setting is not None:
        env["REPLYLINE_EVENT_LOOP"] = setting
    proc = ServiceProcess("sender", env, tmp_path)
    proc.start()
    try:
        await proc.wait_ready(timeout=60)
    finally:
        code = await proc.stop()
    assert code == 0, proc.log_path.read_text()
    assert ready_line(proc.log_path)["event_loop"] == loop_class
