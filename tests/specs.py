"""Each service's build from its SPEC, for tests that start services one by one.

Tests reach what a build made (the scheduler's timers and engine, ingest's bound
URL) through ``ctx.parts``; these helpers copy it where the test wants it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from libs.service import Build, Clock, ServiceContext, ServiceSpec
from replyline.services import load_spec


def spec_build(
    spec: ServiceSpec[Any],
    clock: Clock | None = None,
    parts: dict[str, Any] | None = None,
    *,
    then: Callable[[Mapping[str, Any]], None] | None = None,
) -> Build[Any]:
    """``spec.bind(clock)``, also copying the parts into ``parts`` / passing them to ``then``."""
    inner = spec.bind(clock)

    async def build(ctx: ServiceContext[Any]) -> Any:
        handlers = await inner(ctx)
        if parts is not None:
            parts.update(ctx.parts)
        if then is not None:
            then(ctx.parts)
        return handlers

    return build


def ingest_builder(on_listening: Callable[[str], None]) -> Build[Any]:
    """Ingest's build; ``on_listening`` gets the bound base URL (tests listen on port 0)."""
    return spec_build(load_spec("ingest"), then=lambda parts: on_listening(parts["base_url"]))


drafter_builder = partial(spec_build, load_spec("drafter"))
sender_builder = partial(spec_build, load_spec("sender"))
scheduler_builder = partial(spec_build, load_spec("scheduler"))
drafter_build = spec_build(load_spec("drafter"))
router_build = spec_build(load_spec("router"))
sender_build = spec_build(load_spec("sender"))
