from pathlib import Path

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


def test_one_yaml_file_serves_every_service(tmp_path: Path) -> None:
    config = tmp_path / "replyline.yaml"
    config.write_text(
        "owner_numbers: ['+15551230009']\n"
        "drafter: {api_key: drafter-key, threshold: 0.6}\n"
        "router: {language_threshold: 0.3}\n"
    )
    env = {"REPLYLINE_CONFIG": str(config)}
    s = load(DemoSettings, section="drafter", env=env)
    assert (s.api_key, s.threshold, s.owner_numbers) == ("drafter-key", 0.6, ("+15551230009",))
    # The router section is read only by a service loading section="router".
    with pytest.raises(SettingsError, match=r"unknown setting.*language_threshold"):
        load(DemoSettings, section="router", env=env)
    config.write_text("drafter: {api_key: k, tresholdd: 1}\n")
    with pytest.raises(SettingsError, match="tresholdd"):
        load(DemoSettings, section="drafter", env=env)


def test_nats_url_lists_several_servers_and_replicas_are_bounded() -> None:
    s = load(CommonSettings, env={"REPLYLINE_NATS_URL": "nats://a:4222, nats://b:4222,nats://c:4222,"})
    assert nats_servers(s.nats_url) == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert s.nats_replicas == 1
    assert load(CommonSettings, env={"REPLYLINE_NATS_REPLICAS": "3"}).nats_replicas == 3
    for bad in ("0", "6"):
        with pytest.raises(SettingsError, match="nats_replicas must be between 1 and 5"):
            load(CommonSettings, env={"REPLYLINE_NATS_REPLICAS": bad})
    with pytest.raises(SettingsError, match="at least one server"):
        load(CommonSettings, env={"REPLYLINE_NATS_URL": " , "})
