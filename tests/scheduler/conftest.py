"""Scheduler fixtures: a manual clock, a real SMTP server, workflow folders, running instances."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from libs.embedded import free_port
from services.scheduler.clock import ManualClock
from services.scheduler.service import SPEC
from services.scheduler.settings import SchedulerSettings
from tests.harness import RunningService, start_service

REPO = Path(__file__).resolve().parents[2]


class Inbox:
    """aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    """A workflows folder holding the welcome sequence and the email templates."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    shutil.copy(REPO / "workflows" / "new_lead_welcome.yaml", folder)
    shutil.copytree(REPO / "workflows" / "email_templates", folder / "email_templates")
    return folder


class Schedulers:
    """Starts scheduler instances for a test and stops them all at the end."""

    def __init__(
        self, make_settings: Callable[..., Any], clock: ManualClock, workflow_dir: Path, smtp_port: int
    ) -> None:
        self.make_settings = make_settings
        self.clock = clock
        self.workflow_dir = workflow_dir
        self.smtp_port = smtp_port
        self.running: list[RunningService] = []

    def settings(self, **overrides: Any) -> SchedulerSettings:
        values: dict[str, Any] = {
            "workflows_dir": str(self.workflow_dir),
            "email_templates_dir": str(self.workflow_dir / "email_templates"),
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp_port,
        }
        values.update(overrides)
        settings: SchedulerSettings = self.make_settings(SchedulerSettings, **values)
        return settings

    async def start(self, **overrides: Any) -> tuple[RunningService, Mapping[str, Any]]:
        """A running scheduler and what its build made (``timers``, ``engine``, ``scheduler``)."""
        service = await start_service(self.settings(**overrides), SPEC, clock=self.clock)
        self.running.append(service)
        await service.ctx.parts["timers"].ready.wait()
        return service, service.ctx.parts

    async def stop(self, service: RunningService) -> None:
        await service.stop()
        self.running.remove(service)


@pytest.fixture
async def schedulers(
    make_settings: Callable[..., Any],
    clock: ManualClock,
    workflow_dir: Path,
    smtp_inbox: tuple[Inbox, int],
) -> AsyncIterator[Schedulers]:
    runner = Schedulers(make_settings, clock, workflow_dir, smtp_inbox[1])
    yield runner
    for service in list(runner.running):
        await runner.stop(service)
