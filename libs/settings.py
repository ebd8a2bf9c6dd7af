"""One frozen settings object per service, read once at start-up.

Values come from an optional YAML file (``REPLYLINE_CONFIG``) overlaid by
``REPLYLINE_<FIELD>`` environment variables. Nothing else in the code base
reads the environment: the object built here is passed down.

A field whose type is a settings Struct is a *section* (e.g. the drafter's
``drafter_llm``, a :class:`libs.llm.LlmSettings`): each of its values has a flat
name ``<field>_<name>`` (``REPLYLINE_DRAFTER_LLM_BASE_URL``, or
``drafter_llm_base_url`` in the file and in overrides) besides the nested form
(``drafter_llm: {base_url: ...}``; ``REPLYLINE_DRAFTER_LLM`` as JSON). A class may
name, in ``section_defaults``, an explicit shared default for a section: the
drafter's ``{"drafter_llm": "llm"}`` reads ``REPLYLINE_LLM_<NAME>`` for any value
its own variables leave unset. No other class reads those variables.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
import yaml

PREFIX = "REPLYLINE_"
CONFIG_ENV = "REPLYLINE_CONFIG"

# The dev stack and `replyline sms` share these so that a fresh checkout works
# end to end without any configuration. Never use them in production.
DEV_TWILIO_AUTH_TOKEN = "dev-auth-token-not-secret"
DEV_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_OWNER_NUMBER = "+15550000001"
DEV_BUSINESS_NUMBER = "+15550000000"


class SettingsError(Exception):
    """A missing or invalid setting, with the variable name to fix."""


# Bounds of one value are declared on its field and checked by msgspec when
# ``load`` converts the settings (the error names the variable to fix);
# ``__post_init__`` keeps the checks that relate several fields.
#: A count that must be at least one.
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
#: A duration or size that must be above zero.
Positive = Annotated[float, msgspec.Meta(gt=0)]
#: A duration that may be zero (which usually turns the feature off) but not less.
NotNegative = Annotated[float, msgspec.Meta(ge=0)]
#: A probability or a confidence score.
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings every service shares."""

    #: Section field -> env prefix of its explicit shared default (see the module doc).
    section_defaults: ClassVar[dict[str, str]] = {}

    #: One NATS URL, or several comma-separated (the servers of a cluster): the client
    #: picks one and fails over to the others (and to servers the cluster announces).
    nats_url: str = "nats://127.0.0.1:4222"
    #: Replicas of every stream (PIPELINE, DLQ) and KV bucket (timers, heartbeats) this
    #: deployment creates: 1 on a single server, 3 (or 5) on a JetStream cluster. More
    #: than the cluster has servers fails at start-up (nats-server refuses the stream);
    #: JetStream allows 1 to 5.
    nats_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    #: NATS credentials (deploy/nats/nats-server.conf has one user per service).
    #: Either user + password (or password_file, e.g. a compose secret), or an
    #: nkey/JWT ``.creds`` file; ``nats://user:pass@host`` in the URL also works.
    nats_user: str = ""
    nats_password: str = ""
    nats_password_file: str = ""
    nats_creds: str = ""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/replyline"
    #: Prefix for stream, subject, consumer and KV names so several
    #: deployments (or test runs) can share one NATS server. Empty in production.
    namespace: str = ""
    log_level: str = "INFO"
    log_format: str = "json"  # json | console
    #: Owner numbers (E.164) allowed to approve drafts by SMS and receiving prompts.
    owner_numbers: tuple[str, ...] = (DEV_OWNER_NUMBER,)
    business_number: str = DEV_BUSINESS_NUMBER
    #: Public base URL Twilio reaches us at; used for signatures and callbacks.
    public_base_url: str = "http://127.0.0.1:8080"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    # JetStream consumer tuning.
    max_deliver: AtLeastOne = 6
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0)
    fetch_batch: int = 64
    max_in_flight: int = 64
    #: Events of one fetch that batched handlers handle in one transaction (1 = one by one).
    batch_max: AtLeastOne = 32
    drain_grace_s: float = 10.0
    stream_max_age_days: float = 30.0
    duplicate_window_s: float = 7200.0
    #: Port for /health/live, /health/ready and /metrics (0 = pick a free one, -1 = off).
    health_port: int = -1
    db_pool_min: int = 1
    db_pool_max: int = 10
    #: The event loop of a service process (libs/event_loop.py): uvloop, or asyncio's own.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    def __post_init__(self) -> None:
        if self.nats_password and self.nats_password_file:
            raise ValueError("set nats_password or nats_password_file, not both")
        if (self.nats_password or self.nats_password_file) and not self.nats_user:
            raise ValueError("nats_password needs nats_user")
        if self.nats_user and not re.fullmatch(r"[A-Za-z0-9_-]+", self.nats_user):
            # It names the user's reply inbox (_INBOX.<user>.>): one subject token.
            raise ValueError("nats_user may only hold letters, digits, '_' and '-'")
        if self.nats_creds and self.nats_user:
            raise ValueError("set nats_creds or nats_user, not both")
        if self.namespace and not re.fullmatch(r"[A-Za-z0-9_-]+", self.namespace):
            raise ValueError("namespace may only hold letters, digits, '_' and '-'")
        if not nats_servers(self.nats_url):
            raise ValueError("nats_url must name at least one server")
        if len(self.backoff_s) >= self.max_deliver:
            raise ValueError("backoff_s must have fewer entries than max_deliver")
        for number in self.owner_numbers:
            if not re.fullmatch(r"\+[1-9]\d{6,14}", number):
                raise ValueError(f"owner number {number!r} is not E.164 (+15551234567)")


def nats_servers(url: str) -> list[str]:
    """The server URLs of a (possibly comma-separated) ``nats_url``."""
    return [part.strip() for part in url.split(",") if part.strip()]


S = TypeVar("S", bound=msgspec.Struct)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def _sections(cls: type[msgspec.Struct]) -> dict[str, type[msgspec.Struct]]:
    """The section fields of ``cls`` (their type is a Struct) and that type."""
    found: dict[str, type[msgspec.Struct]] = {}
    for field in msgspec.structs.fields(cls):
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            found[field.name] = field.type
    return found


def _from_env(cls: type[msgspec.Struct], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    sections = _sections(cls)
    shared: dict[str, str] = getattr(cls, "section_defaults", {})
    for field in msgspec.structs.fields(cls):
        raw = env.get(env_name(field.name))
        if raw is not None:
            values[field.name] = _parse_env_value(field.name, field.type, raw)
        section = sections.get(field.name)
        if section is None:
            continue
        # Lowest first: the shared default, the section as JSON, then its own variables.
        layers = []
        if field.name in shared:
            layers.append(_section_from_env(section, shared[field.name], env))
        layers.append(values.pop(field.name, {}))
        layers.append(_section_from_env(section, field.name, env))
        merged = _merge_layers(layers)
        if merged:
            values[field.name] = merged
    return values


def _section_from_env(section: type[msgspec.Struct], prefix: str, env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for sub in msgspec.structs.fields(section):
        name = f"{prefix}_{sub.name}"
        raw = env.get(env_name(name))
        if raw is not None:
            values[sub.name] = _parse_env_value(name, sub.type, raw)
    return values


def _merge_layers(layers: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        if isinstance(layer, msgspec.Struct):
            layer = msgspec.structs.asdict(layer)
        if not isinstance(layer, Mapping):
            raise SettingsError(f"a settings section must be a mapping, got {layer!r}")
        merged.update(layer)
    return merged


def _fold_sections(cls: type[msgspec.Struct], data: Mapping[str, Any]) -> dict[str, Any]:
    """``drafter_llm_base_url: x`` -> ``drafter_llm: {base_url: x}`` (file and overrides)."""
    sections = _sections(cls)
    out: dict[str, Any] = {}
    flat: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        owner = next((name for name in sections if key.startswith(name + "_")), None)
        sub = key[len(owner) + 1 :] if owner else ""
        if owner and sub in {f.name for f in msgspec.structs.fields(sections[owner])}:
            flat.setdefault(owner, {})[sub] = value
        else:
            out[key] = value
    for name, values in flat.items():
        out[name] = _merge_layers([out.get(name, {}), values])
    return out


def _complete_sections(cls: type[msgspec.Struct], data: dict[str, Any]) -> None:
    """A section given in part keeps the rest of its field's default *instance*
    (``router_llm: X = X(timeout_s=10)``), not only its class's defaults."""
    for field in msgspec.structs.fields(cls):
        if field.name in data and isinstance(field.default, msgspec.Struct):
            data[field.name] = _merge_layers([field.default, data[field.name]])


def _overlay(cls: type[msgspec.Struct], data: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """``data`` updated by ``layer``; a section is merged value by value, not replaced."""
    sections = _sections(cls)
    for key, value in layer.items():
        if key in sections and key in data:
            data[key] = _merge_layers([data[key], value])
        else:
            data[key] = value


def _parse_env_value(name: str, annotation: Any, raw: str) -> Any:
    info = msgspec.inspect.type_info(annotation)
    containers = (
        msgspec.inspect.ListType,
        msgspec.inspect.TupleType,
        msgspec.inspect.VarTupleType,
        msgspec.inspect.SetType,
        msgspec.inspect.FrozenSetType,
    )
    if isinstance(info, containers):
        text = raw.strip()
        if text.startswith("["):
            return _json(name, text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(info, msgspec.inspect.DictType | msgspec.inspect.StructType):
        return _json(name, raw)
    return raw


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{env_name(name)}: not valid JSON ({exc.msg})") from None


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise SettingsError(f"{CONFIG_ENV}={path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{CONFIG_ENV}={path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{CONFIG_ENV}={path}: expected a mapping of setting: value")
    return {str(k).lower(): v for k, v in data.items()}


def load(
    cls: type[S],
    *,
    section: str | None = None,
    sections: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> S:
    """Build ``cls`` from the config file, the environment and explicit overrides (in that order).

    One YAML file serves the whole deployment: shared settings at the top level,
    each service's own under its name (``drafter: {profile_path: ...}``); a
    service reads the top level plus its ``section``. ``sections`` names every
    service (the caller's registry, services.SERVICES; libs/ does not know the
    list): those top-level keys are services' own sections, not shared settings.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    config_path = env.get(CONFIG_ENV)
    if config_path:
        data = _from_file(Path(config_path))
        own = data.get(section) if section else None
        if own is not None and not isinstance(own, dict):
            raise SettingsError(f"{config_path}: '{section}' must be a mapping of setting: value")
        skip = {*sections, *([section] if section else [])}
        data = _fold_sections(cls, {k: v for k, v in data.items() if k not in skip})
        _overlay(cls, data, _fold_sections(cls, {str(k).lower(): v for k, v in (own or {}).items()}))
    known = {f.name for f in msgspec.structs.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f" (a service's own settings go under its name, e.g. '{section or 'router'}:')"
        raise SettingsError(f"{config_path}: unknown setting(s): {', '.join(unknown)}{where}")
    _overlay(cls, data, _from_env(cls, env))
    _overlay(cls, data, _fold_sections(cls, dict(overrides or {})))
    _complete_sections(cls, data)
    try:
        return msgspec.convert(data, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc))) from None


def _explain(message: str) -> str:
    """Turn msgspec's `... - at `$.field`` into the variable a user has to fix."""
    missing = re.search(r"missing required field `(\w+)`", message)
    if missing:
        return f"{env_name(missing.group(1))} is required but not set"
    at = re.search(r"at `\$\.([\w.]+)", message)
    if at:
        reason = message.split(" - at ")[0]
        # `$.drafter_llm.timeout_s` is REPLYLINE_DRAFTER_LLM_TIMEOUT_S.
        return f"{env_name(at.group(1).replace('.', '_'))}: {reason}"
    return f"invalid settings: {message}"
