"""Wiring: settings -> profile, LLM client, handlers and the request/reply API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from libs.llm import LLM
from libs.service import Built, Clock, ServiceContext, ServiceSpec
from services.drafter.deps import Deps
from services.drafter.endpoints import endpoints
from services.drafter.handlers import Drafter, build_handlers
from services.drafter.owner_channel import OwnerChannel
from services.drafter.profile import Profile, load_profile
from services.drafter.settings import DrafterSettings

NAME = "drafter"
MIGRATIONS = Path(__file__).parent / "migrations"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The runner gives a probe 3 s per heartbeat; stay under it.
PROBE_TIMEOUT_S = 2.0
#: Results are reused this long: heartbeats every 5 s must not hammer a paid API.
PROBE_CACHE_S = 30.0


def profile_from(settings: DrafterSettings) -> Profile:
    """Relative paths are tried from the working directory, then from the repository root."""
    path = Path(settings.profile_path)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return load_profile(path)


def llm_probe(
    llm: LLM, *, timeout: float = PROBE_TIMEOUT_S, cache_s: float = PROBE_CACHE_S
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``ctx.probes["llm"]``: the providers' reachability, cached ``cache_s`` seconds.

    It travels in the drafter's heartbeat; ingest's GET /health/system shows it as
    ``probes.llm`` (ingest needs no LLM settings of its own)."""
    lock = asyncio.Lock()
    cached: list[tuple[float, dict[str, Any]]] = []

    async def probe() -> dict[str, Any]:
        async with lock:
            if cached and time.monotonic() - cached[0][0] < cache_s:
                return cached[0][1]
            result = await llm.reachability(timeout, off_detail="no LLM endpoint: drafts use templates")
            cached[:] = [(time.monotonic(), result)]
            return result

    return probe


async def build(ctx: ServiceContext[DrafterSettings], clock: Clock) -> Built:
    """Tests pass their own clock (business hours) through the spec."""
    settings = ctx.settings
    profile = profile_from(settings)  # a broken profile stops start-up with a ProfileError
    llm = LLM.from_settings(settings.drafter_llm, service=NAME)
    ctx.stack.push_async_callback(llm.aclose)
    ctx.probes["llm"] = llm_probe(llm)
    deps = Deps(
        resources=ctx.resources,
        llm=llm,
        profile=profile,
        clock=clock,
        owners=OwnerChannel(settings),
    )
    drafter = Drafter(deps)
    ctx.endpoints.extend(endpoints(ctx.pool))
    ctx.log.info(
        "drafter_configured",
        profile=profile.name,
        providers=[f"{p.name}:{p.model}" for p in llm.providers] or "templates",
        owners=len(settings.owner_numbers),
    )
    return Built(build_handlers(drafter), {"drafter": drafter})


SPEC = ServiceSpec(NAME, DrafterSettings, build, MIGRATIONS)
