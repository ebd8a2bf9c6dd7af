from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from libs.settings import CommonSettings, SettingsError, load, nats_servers


class DemoSettings(CommonSettings, frozen=True, kw_only=True):
    api_key: str
    threshold: float = 0.5
    prices: dict[str, float] = msgspec.field(default_factory=dict)


def test_defaults_and_required_field_message() -> None:
    with pytest.raises(SettingsError, match="REPLYLINE_API_KEY is required but not set"):
        load(DemoSettings, env={})
    s = load(DemoSettings, env={"REPLYLINE_API_KEY": "k"})
    assert s.api_key == "k"
    assert s.threshold == 0.5
    assert s.namespace == ""


def test_env_values_are_converted() -> None:
    s = load(
        DemoSettings,
        env={
            "REPLYLINE_API_KEY": "k",
            "REPLYLINE_THRESHOLD": "0.8",
            "REPLYLINE_MAX_DELIVER": "9",
            "REPLYLINE_OWNER_NUMBERS": "+15551230001, +15551230002",
            "REPLYLINE_BACKOFF_S": "[1, 2.5]",
            "REPLYLINE_PRICES": '{"gpt-4o-mini": 0.15}',
        },
    )
    assert s.threshold == 0.8
    assert s.max_deliver == 9
    assert s.owner_numbers == ("+15551230001", "+15551230002")
    assert s.backoff_s == (1.0, 2.5)
    assert s.prices == {"gpt-4o-mini": 0.15}


def test_invalid_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"REPLYLINE_THRESHOLD: Expected `float`"):
        load(DemoSettings, env={"REPLYLINE_API_KEY": "k", "REPLYLINE_THRESHOLD": "high"})
    with pytest.raises(SettingsError, match="REPLYLINE_PRICES: not valid JSON"):
        load(DemoSettings, env={"REPLYLINE_API_KEY": "k", "REPLYLINE_PRICES": "{oops"})


def test_cross_field_validation() -> None:
    with pytest.raises(SettingsError, match=r"not E\.164"):
        load(DemoSettings, env={"REPLYLINE_API_KEY": "k", "REPLYLINE_OWNER_NUMBERS": "555-1234"})
    with pytest.raises(SettingsError, match="namespace"):
        load(DemoSettings, env={"REPLYLINE_API_KEY": "k", "REPLYLINE_NAMESPACE": "a.b"})


def test_yaml_file_then_env_override(tmp_path: Path) -> None:
    config = tmp_path / "replyline.yaml"
    config.write_text("api_key: from-file\nthreshold: 0.7\n")
    env = {"REPLYLINE_CONFIG": str(config), "REPLYLINE_THRESHOLD": "0.9"}
    s = load(DemoSettings, env=env)
    assert (s.api_key, s.threshold) == ("from-file", 0.9)


def test_yaml_file_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("api_key: [unclosed\n")
    with pytest.raises(SettingsError, match="invalid YAML"):
        load(DemoSettings, env={"REPLYLINE_CONFIG": str(config)})
    config.write_text("api_key: k\napi_kye: typo\n")
    with pytest.raises(SettingsError, match=r"unknown setting.*api_kye"):
        load(DemoSettings, env={"REPLYLINE_CONFIG": str(config)})
    with pytest.raises(SettingsError, match="cannot read"):
        load(DemoSettings, env={"REPLYLINE_CONFIG": str(tmp_path / "missing.yaml")})


def test_settings_are_frozen() -> None:
    s = load(DemoSettings, env={"REPLYLINE_API_KEY": "k"})
    with pytest.raises(AttributeError):
        s.api_key = "other"  # type: ignore[misc]


#: The caller's registry (services.SERVICES in production; libs/ knows no list).
FLEET = ("drafter", "router")


def test_one_yaml_file_serves_every_service(tmp_path: Path) -> None:
    config = tmp_path / "replyline.yaml"
    config.write_text(
        "owner_numbers: ['+15551230009']\n"
        "drafter: {api_key: drafter-key, threshold: 0.6}\n"
        "router: {language_threshold: 0.3}\n"
    )
    env = {"REPLYLINE_CONFIG": str(config)}
    s = load(DemoSettings, section="drafter", sections=FLEET, env=env)
    assert (s.api_key, s.threshold, s.owner_numbers) == ("drafter-key", 0.6, ("+15551230009",))
    # The router section is read only by a service loading section="router".
    with pytest.raises(SettingsError, match=r"unknown setting.*language_threshold"):
        load(DemoSettings, section="router", sections=FLEET, env=env)
    config.write_text("drafter: {api_key: k, tresholdd: 1}\n")
    with pytest.raises(SettingsError, match="tresholdd"):
        load(DemoSettings, section="drafter", sections=FLEET, env=env)


class DemoSection(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str = ""
    model: str = "m-default"
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


class SectionSettings(CommonSettings, frozen=True, kw_only=True):
    section_defaults: ClassVar[dict[str, str]] = {"first_llm": "llm"}

    first_llm: DemoSection = DemoSection()
    second_llm: DemoSection = DemoSection(timeout_s=5.0)


def test_a_section_reads_its_own_prefixed_variables() -> None:
    s = load(
        SectionSettings,
        env={"REPLYLINE_SECOND_LLM_BASE_URL": "http://b/v1", "REPLYLINE_SECOND_LLM_TIMEOUT_S": "2.5"},
    )
    assert s.second_llm == DemoSection(base_url="http://b/v1", timeout_s=2.5)
    assert s.first_llm == DemoSection()
    with pytest.raises(SettingsError, match=r"REPLYLINE_SECOND_LLM_TIMEOUT_S: Expected `float`"):
        load(SectionSettings, env={"REPLYLINE_SECOND_LLM_TIMEOUT_S": "soon"})
    with pytest.raises(SettingsError, match=r"REPLYLINE_SECOND_LLM: timeout_s must be positive"):
        load(SectionSettings, env={"REPLYLINE_SECOND_LLM_TIMEOUT_S": "0"})


def test_the_shared_default_is_read_only_by_the_section_naming_it() -> None:
    env = {
        "REPLYLINE_LLM_BASE_URL": "http://shared/v1",
        "REPLYLINE_LLM_MODEL": "shared-model",
        "REPLYLINE_FIRST_LLM_MODEL": "own-model",
    }
    s = load(SectionSettings, env=env)
    # Its own variable wins value by value; the shared one fills the rest.
    assert (s.first_llm.base_url, s.first_llm.model) == ("http://shared/v1", "own-model")
    assert s.second_llm == DemoSection(timeout_s=5.0)


def test_sections_merge_file_env_and_overrides_value_by_value(tmp_path: Path) -> None:
    config = tmp_path / "replyline.yaml"
    config.write_text(
        "drafter:\n"
        "  first_llm: {base_url: 'http://file/v1', model: file-model}\n"
        "  second_llm_base_url: 'http://flat/v1'\n"
    )
    env = {"REPLYLINE_CONFIG": str(config), "REPLYLINE_FIRST_LLM_MODEL": "env-model"}
    s = load(SectionSettings, section="drafter", sections=FLEET, env=env, overrides={"second_llm_model": "o"})
    assert s.first_llm == DemoSection(base_url="http://file/v1", model="env-model")
    # The field's default instance fills what no layer set (timeout_s=5.0, not the class's 20).
    assert s.second_llm == DemoSection(base_url="http://flat/v1", model="o", timeout_s=5.0)
    config.write_text("drafter: {first_llm_modle: typo}\n")
    with pytest.raises(SettingsError, match="first_llm_modle"):
        load(SectionSettings, section="drafter", sections=FLEET, env=env)


def test_nats_url_lists_several_servers_and_replicas_are_bounded() -> None:
    s = load(CommonSettings, env={"REPLYLINE_NATS_URL": "nats://a:4222, nats://b:4222,nats://c:4222,"})
    assert nats_servers(s.nats_url) == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert s.nats_replicas == 1
    assert load(CommonSettings, env={"REPLYLINE_NATS_REPLICAS": "3"}).nats_replicas == 3
    for bad in ("0", "6"):
        with pytest.raises(SettingsError, match=r"REPLYLINE_NATS_REPLICAS: Expected `int` [<>]= [15]"):
            load(CommonSettings, env={"REPLYLINE_NATS_REPLICAS": bad})
    with pytest.raises(SettingsError, match="at least one server"):
        load(CommonSettings, env={"REPLYLINE_NATS_URL": " , "})
