"""What every part of the drafter shares; built once by service.build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from libs.llm import LLM
from libs.resources import Resources, UsesResources
from services.drafter.owner_channel import OwnerChannel
from services.drafter.profile import Profile
from services.drafter.settings import DrafterSettings
from services.drafter.work import SERVICE

__all__ = ["SERVICE", "Deps"]


@dataclass(frozen=True)
class Deps(UsesResources[DrafterSettings]):
    #: ``settings``, ``pool``, ``bus`` (reads only: consent state) and ``outbox`` (one
    #: unit per handler, services/drafter/work.py): every event goes through its units.
    resources: Resources[DrafterSettings]
    llm: LLM
    profile: Profile
    #: Tests pass a manual clock (business hours decide the after-hours acknowledgement).
    clock: Callable[[], datetime]
    owners: OwnerChannel
