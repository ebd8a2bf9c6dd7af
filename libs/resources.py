"""What a slice's own code takes from the runner: :class:`Resources`.

The runner (libs/service.py) opens them; ``ctx.resources`` hands them over whole.
The drafter's ``Deps``, the scheduler's ``Engine`` and the sender's ``Outbox`` take
one instead of its parts and, through :class:`UsesResources`, keep the parts'
names (``settings``, ``pool``, ``bus``, ``outbox``) for the code that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from libs.bus import Bus
from libs.event_outbox import EventOutbox
from libs.settings import CommonSettings

S = TypeVar("S", bound=CommonSettings)


@dataclass(frozen=True)
class Resources(Generic[S]):
    """A running slice's settings, pool, bus and event outbox."""

    settings: S
    pool: asyncpg.Pool
    bus: Bus
    #: The slice's transactional outbox (libs/event_outbox.py); its sweeper runs with the service.
    outbox: EventOutbox


class UsesResources(Generic[S]):
    """An object that keeps its :class:`Resources` as ``resources``: their parts, by name."""

    resources: Resources[S]

    @property
    def settings(self) -> S:
        """The service's settings (its own class, with the common ones)."""
        return self.resources.settings

    @property
    def pool(self) -> asyncpg.Pool:
        """For reads and for writes that mean no event; the others go through ``outbox`` units."""
        return self.resources.pool

    @property
    def bus(self) -> Bus:
        """For reads and core NATS; events describing the slice's rows go through ``outbox``."""
        return self.resources.bus

    @property
    def outbox(self) -> EventOutbox:
        """The slice's transactional outbox: rows and the events they mean commit together."""
        return self.resources.outbox
