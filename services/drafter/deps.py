"""What every part of the drafter shares; built once by service.build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.bus import Bus
from libs.event_outbox import EventOutbox
from libs.llm import LLM
from services.drafter.owner_channel import OwnerChannel
from services.drafter.profile import Profile
from services.drafter.settings import DrafterSettings
from services.drafter.work import SERVICE

__all__ = ["SERVICE", "Deps"]


@dataclass(frozen=True)
class Deps:
    settings: DrafterSettings
    #: Reads only (consent state); every event goes through ``outbox`` units.
    bus: Bus
    pool: asyncpg.Pool
    #: The drafter's transactional outbox: one unit per handler (services/drafter/work.py).
    outbox: EventOutbox
    llm: LLM
    profile: Profile
    #: Tests pass a manual clock (business hours decide the after-hours acknowledgement).
    clock: Callable[[], datetime]
    owners: OwnerChannel
