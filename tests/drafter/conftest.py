"""Fixtures for the drafter: the service in-process, fake LLM providers, event helpers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY

from libs import rpc as libs_rpc
from libs.bus import Bus
from libs.events import DraftDecided, InboundRouted, thread_of
from services.drafter.service import SPEC
from services.drafter.settings import DrafterSettings
from tests.harness import RunningService, eventually, start_service
from testsupport.fakes.openai_server import FakeOpenAI

OWNER = "+15550000001"
OWNER_2 = "+15550000002"
LEAD = "+15551234567"
LEAD_2 = "+15557654321"
BUSINESS = "+15550000000"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE = str(REPO_ROOT / "profiles" / "business.yaml")

StartDrafter = Callable[..., Awaitable[RunningService]]


@pytest.fixture
async def primary() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def fallback() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def start_drafter(make_settings: Callable[..., Any]) -> AsyncIterator[StartDrafter]:
    """Start the drafter with test settings (+ overrides); stopped at teardown."""
    running: list[RunningService] = []

    async def start(**overrides: Any) -> RunningService:
        values: dict[str, Any] = {
            "owner_numbers": [OWNER],
            "business_number": BUSINESS,
            "profile_path": PROFILE,
            "drafter_llm_max_retries": 0,
            "drafter_llm_timeout_s": 2.0,
            # Tests decide right after the prompt; test_versions.py covers the grace.
            "bare_reply_grace_s": 0.0,
        }
        values.update(overrides)
        settings = make_settings(DrafterSettings, **values)
        service = await start_service(settings, SPEC)
        running.append(service)
        return service

    yield start
    for service in running:
        await service.stop()


@pytest.fixture
def llm_settings(primary: FakeOpenAI, fallback: FakeOpenAI) -> dict[str, Any]:
    return {
        "drafter_llm_base_url": primary.base_url,
        "drafter_llm_model": "gpt-4o-mini",
        "drafter_llm_fallback_base_url": fallback.base_url,
        "drafter_llm_fallback_model": "small-model",
        "drafter_llm_prices": {"gpt-4o-mini": [0.15, 0.60], "small-model": [1.0, 2.0]},
    }


def routed(
    sid: str = "SM0001",
    *,
    lead: str = LEAD,
    body: str = "How much is drain cleaning?",
    intent: str | None = "pricing",
    language: str | None = "en",
    decision: str = "draft",
    rule: str = "9_draft",
) -> InboundRouted:
    return InboundRouted(
        thread=thread_of(lead),
        message_sid=sid,
        from_number=lead,
        to_number=BUSINESS,
        body=body,
        decision=decision,  # type: ignore[arg-type]
        rule=rule,
        status="DRAFT_PENDING_APPROVAL" if decision == "draft" else "NEEDS_REVIEW",
        language=language,
        language_confidence=0.9,
        intent=intent,
        intent_score=0.8,
    )


def owner_says(
    action: str,
    ref: str | None = None,
    *,
    text: str | None = None,
    reviewer: str = OWNER,
    source: str = "sms",
    notes: str = "",
) -> DraftDecided:
    """A decision as the router publishes it for an owner SMS (thread = reviewer's)."""
    return DraftDecided(
        thread=thread_of(reviewer),
        action=action,  # type: ignore[arg-type]
        reviewer=reviewer,
        source=source,  # type: ignore[arg-type]
        ref=ref,
        text=text,
        notes=notes,
        message_sid=f"SMowner{action}{ref}",
    )


async def rpc(bus: Bus, method: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ask the running drafter's endpoint (``pending`` or ``queue``) through the typed client."""
    endpoint = {"pending": libs_rpc.DRAFTS_PENDING, "queue": libs_rpc.MANUAL_QUEUE}[method]
    request = msgspec.convert(payload or {}, libs_rpc.Listing)
    answer = await libs_rpc.RpcClient(bus.nc, bus.prefix, 5).call(endpoint, request)
    return msgspec.to_builtins(answer)  # type: ignore[no-any-return]


async def rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(sql, *args)]


async def committed(pool: asyncpg.Pool, draft_id: str, version: int = 1) -> dict[str, Any]:
    """The draft row, once its transaction committed.

    The drafter publishes a draft's events after committing its rows (its outbox unit),
    so a test that saw the event finds the row; waiting here also covers a test that
    reads the table before any event.
    """

    async def row() -> dict[str, Any] | None:
        found = await pool.fetchrow(
            "SELECT * FROM drafts WHERE draft_id = $1 AND version = $2",
            uuid.UUID(draft_id),
            version,
        )
        return dict(found) if found else None

    result: dict[str, Any] = await eventually(row, timeout=5)
    return result


async def settled(pool: asyncpg.Pool, sql: str, *args: Any, count: int = 1) -> list[dict[str, Any]]:
    """Rows of ``sql`` once there are at least ``count`` of them."""

    async def fetch() -> list[dict[str, Any]] | None:
        found = await rows(pool, sql, *args)
        return found if len(found) >= count else None

    result: list[dict[str, Any]] = await eventually(fetch, timeout=5)
    return result


def sample(name: str, **labels: str) -> float:
    """A metric sample in this process's registry (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def moved(name: str, before: float, by: float, **labels: str) -> None:
    """The sample grows by exactly ``by`` from ``before``.

    The drafter counts once its unit has committed and published its events, a moment
    after those events are visible, so the first reading may still be the old one.
    """
    await eventually(lambda: sample(name, **labels) - before >= by, timeout=5)
    assert sample(name, **labels) - before == pytest.approx(by)
