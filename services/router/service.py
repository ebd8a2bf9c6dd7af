"""Wiring: settings -> classifiers (built once) -> handlers."""

from __future__ import annotations

from pathlib import Path

from libs.consumer import Batched, Handler
from libs.events import ContactPaused, Event, HumanReply, InboundReceived, TimerFired
from libs.service import Built, Clock, ServiceContext, ServiceSpec
from services.router.classification import LocalClassifier
from services.router.handlers import NAME, Router
from services.router.llm import LlmClassifier
from services.router.settings import RouterSettings

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS", "NAME", "SPEC", "build"]


async def build(ctx: ServiceContext[RouterSettings], clock: Clock) -> Built:
    """The router keeps no time of its own: ``clock`` is unused."""
    settings = ctx.settings
    local = LocalClassifier(settings)  # a bad intents file stops start-up here
    llm: LlmClassifier | None = None
    if settings.router_llm.enabled:
        llm = LlmClassifier(settings, local)
        ctx.stack.push_async_callback(llm.close)
    router = Router(settings, ctx.resources.outbox, local, llm)
    ctx.stack.callback(router.executor.shutdown, wait=False, cancel_futures=True)
    ctx.log.info(
        "router_configured",
        intents=local.intents.names,
        intents_path=str(local.intents.path),
        llm=[f"{p.name}:{p.model}" for p in llm.llm.providers] if llm else "off",
        owners=len(settings.owner_numbers),
    )
    # Routing writes its rows and events in one unit as its last step, so a fetch's
    # inbound messages may share one transaction (libs/consumer.py, Batched) — unless
    # an LLM classifies: its calls would then run inside the batch's open transaction.
    on_received: Handler = router.on_received if llm else Batched(router.on_received)
    handlers: dict[type[Event], Handler] = {
        InboundReceived: on_received,
        ContactPaused: router.on_paused,
        HumanReply: router.on_human,
        TimerFired: router.on_timer,
    }
    return Built(handlers, {"router": router})


SPEC = ServiceSpec(NAME, RouterSettings, build, MIGRATIONS)
