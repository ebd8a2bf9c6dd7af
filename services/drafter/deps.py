"""What every part of the drafter shares; built once by handlers.Drafter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from libs.bus import Bus
from libs.llm import LLM
from services.drafter.owner_channel import OwnerChannel
from services.drafter.profile import Profile
from services.drafter.settings import DrafterSettings

#: The service name in audit rows.
SERVICE = "drafter"


@dataclass(frozen=True)
class Deps:
    settings: DrafterSettings
    bus: Bus
    pool: asyncpg.Pool
    llm: LLM
    profile: Profile
    #: Tests pass a manual clock (business hours decide the after-hours acknowledgement).
    clock: Callable[[], datetime]
    owners: OwnerChannel
