"""Business profile loading and prompt/template building."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.drafter.profile import ProfileError, load_profile, parse_profile
from services.drafter.prompt import (
    HistoryItem,
    build_messages,
    clean_reply,
    language_of,
    render_prompt,
    template_draft,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "profiles" / "business.yaml"

MINIMAL = {
    "name": "Acme Locks",
    "hours": {"en": "9-5", "es": "9-17"},
    "templates": {"default": {"en": "Thanks! {sign_off}", "es": "¡Gracias! {sign_off}"}},
    "sign_off": {"en": "- Acme", "es": "- Acme ES"},
}


def test_example_profile_loads_and_renders_in_both_languages() -> None:
    profile = load_profile(EXAMPLE)
    assert profile.name == "Sunny Side Plumbing"
    en = template_draft(profile, intent="pricing", language="en")
    es = template_draft(profile, intent="pricing", language="es")
    assert "from $129" in en and en.endswith("- Sunny Side Plumbing")
    assert "desde $129" in es and es.startswith("¡Gracias")
    # An intent without its own template uses the default one.
    assert template_draft(profile, intent="complaint", language="en").startswith(
        "Thanks for contacting Sunny Side Plumbing!"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": 5}, "Expected `str`, got `int` - at `$.name`"),
        ({"hours": {"en": "9-5"}}, "missing required field `es` - at `$.hours`"),
        ({"templates": {"booking": {"en": "a", "es": "b"}}}, "must contain a `default` entry"),
        ({"templates": {"default": {"en": "Hi {firstname}", "es": "x"}}},
         "`templates.default.en` uses unknown placeholder(s) ['firstname']"),
        ({"templates": {"default": {"en": "Hi {", "es": "x"}}}, "`templates.default.en`:"),
        ({"templates": {"default": {"en": "ok", "es": "  "}}}, "`templates.default.es` is empty"),
        ({"colour": "red"}, "unknown field `colour`"),
    ],
)
def test_broken_profile_names_the_file_and_the_reason(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    import yaml

    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, **change}))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"business profile {path}: ")
    assert reason in message


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read file"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="invalid YAML"):
        load_profile(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="expected a mapping"):
        load_profile(bad)


def test_prompt_carries_profile_history_and_new_message_in_the_lead_language() -> None:
    profile = load_profile(EXAMPLE)
    history = [
        HistoryItem(author="lead", body="¿Hacen reparaciones de calentadores?"),
        HistoryItem(author="business", body="Sí, diagnóstico $95."),
    ]
    messages = build_messages(
        profile, language="es", intent="pricing", lead_message="¿Y cuánto cuesta?",
        history=history,
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert "Reply in Spanish" in system
    assert "lun-vie 8:00-18:00" in system
    assert "detección de fugas: desde $150 (sin obras, con informe escrito)" in system
    assert 'sign-off "- Sunny Side Plumbing"' in system
    assert "classified as: pricing" in system
    assert "under 320 characters" in system
    assert messages[-1] == {"role": "user", "content": "¿Y cuánto cuesta?"}
    assert "[assistant]\nSí, diagnóstico $95." in render_prompt(messages)


def test_language_codes_and_reply_cleanup() -> None:
    assert language_of("ES") == "es"
    assert language_of("es-MX") == "es"
    assert language_of("fr") == "en"
    assert language_of(None) == "en"
    assert clean_reply('"Hello there"') == "Hello there"
    assert clean_reply("Reply: Hi!") == "Hi!"
    assert clean_reply("It's fine, isn't it") == "It's fine, isn't it"
    assert parse_profile(MINIMAL).sign_off.es == "- Acme ES"
