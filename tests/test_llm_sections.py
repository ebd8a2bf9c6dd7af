"""Issue 14 item 5: each LLM feature has its own settings section, and the drafter's
REPLYLINE_LLM_* (what docs/drafter.md tells operators to set) turns on drafting only."""

from __future__ import annotations

from libs.settings import load
from services.drafter.settings import DrafterSettings
from services.ingest.settings import IngestSettings
from services.router.settings import RouterSettings
from services.scheduler.settings import SchedulerSettings

SHARED = {
    "REPLYLINE_LLM_BASE_URL": "https://llm.example/v1",
    "REPLYLINE_LLM_API_KEY": "sk-drafter",
    "REPLYLINE_LLM_MODEL": "gpt-4o-mini",
    "REPLYLINE_LLM_FALLBACK_BASE_URL": "https://fallback.example/v1",
}


def test_the_drafters_llm_variables_do_not_turn_on_routing_or_outcome_judging() -> None:
    drafter = load(DrafterSettings, env=SHARED)
    assert drafter.drafter_llm.enabled
    assert [p.name for p in drafter.drafter_llm.providers()] == ["primary", "fallback"]
    assert drafter.drafter_llm.api_key == "sk-drafter"
    router = load(RouterSettings, env=SHARED)
    assert not router.router_llm.enabled and router.router_llm.providers() == []
    scheduler = load(SchedulerSettings, env=SHARED)
    assert not scheduler.outcome_llm.enabled and scheduler.outcome_llm.providers() == []
    # Ingest carries no LLM settings at all (the drafter reports its own reachability).
    ingest = load(IngestSettings, env=SHARED)
    assert not any("llm" in name for name in ingest.__struct_fields__)


def test_each_feature_is_turned_on_by_its_own_section() -> None:
    env = {
        "REPLYLINE_DRAFTER_LLM_BASE_URL": "https://drafts.example/v1",
        "REPLYLINE_DRAFTER_LLM_MAX_TOKENS": "200",
        "REPLYLINE_ROUTER_LLM_BASE_URL": "https://classify.example/v1",
        "REPLYLINE_ROUTER_LLM_MODEL": "small",
        "REPLYLINE_OUTCOME_LLM_BASE_URL": "https://judge.example/v1",
        "REPLYLINE_OUTCOME_LLM_MODEL": "judge-1",
    }
    drafter = load(DrafterSettings, env={**SHARED, **env})
    # The drafter's own variable wins over the shared default; the rest comes from it.
    assert drafter.drafter_llm.base_url == "https://drafts.example/v1"
    assert (drafter.drafter_llm.api_key, drafter.drafter_llm.max_tokens) == ("sk-drafter", 200)
    router = load(RouterSettings, env=env).router_llm
    assert (router.enabled, router.model, router.timeout_s) == (True, "small", 10.0)
    outcome = load(SchedulerSettings, env=env).outcome_llm
    assert (outcome.enabled, outcome.model) == (True, "judge-1")
    # Setting the router's or the judge's LLM leaves the drafter on templates.
    assert not load(DrafterSettings, env={k: v for k, v in env.items() if "DRAFTER" not in k}).drafter_llm.enabled


def test_router_durable_setting_is_gone() -> None:
    assert "durable" not in RouterSettings.__struct_fields__
