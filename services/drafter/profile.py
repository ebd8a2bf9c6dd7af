"""The business profile: what the drafter knows about the business, in EN and ES.

Loaded once at start-up from a YAML file (settings.profile_path). A broken file stops
the service with a :class:`ProfileError` naming the file and the reason, never later
in the middle of a draft.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from services.drafter.business_hours import HoursError, OpeningHours, check

Language = Literal["en", "es"]
LANGUAGES: tuple[Language, ...] = ("en", "es")

#: Placeholders a template may use; anything else is rejected at load time.
TEMPLATE_FIELDS = frozenset({"business", "hours", "services", "prices", "sign_off", "phone"})

#: The after-hours acknowledgement may also name the next opening time.
AFTER_HOURS_FIELDS = TEMPLATE_FIELDS | {"next_open"}

#: The template used when an intent has none of its own.
DEFAULT_INTENT = "default"


class ProfileError(Exception):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"business profile {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class Localized(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A text in both supported languages."""

    en: str
    es: str

    def get(self, language: Language) -> str:
        return self.es if language == "es" else self.en


class Service(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Localized
    #: Free text quoted verbatim, never computed: "from $129", or {en: ..., es: ...}.
    price: str | Localized = ""

    def price_text(self, language: Language) -> str:
        return self.price if isinstance(self.price, str) else self.price.get(language)
    description: Localized | None = None


class AfterHoursReply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fixed text (never an AI draft) a lead gets once per closed period (off by default)."""

    enabled: bool = False
    #: Placeholders: TEMPLATE_FIELDS and {next_open} ("8am", "8am Monday").
    text: Localized = Localized(
        en="Thanks! We're closed now and will get back to you after {next_open}. {sign_off}",
        es="¡Gracias! Ahora estamos cerrados; le responderemos a partir de {next_open}. {sign_off}",
    )


class Profile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    hours: Localized
    services: tuple[Service, ...] = ()
    phone: str = ""
    tone: str = "friendly, warm and concise"
    sign_off: Localized = Localized(en="", es="")
    #: intent -> text; must contain "default". Placeholders: see TEMPLATE_FIELDS.
    templates: dict[str, Localized] = msgspec.field(default_factory=dict)
    #: Extra facts for the AI (policies, service area), one per line.
    facts: Localized | None = None
    max_reply_chars: int = 320
    #: When the business is open (docs/business-hours.md); None = never "closed".
    opening_hours: OpeningHours | None = None
    after_hours_reply: AfterHoursReply = AfterHoursReply()

    def services_text(self, language: Language) -> str:
        return ", ".join(s.name.get(language) for s in self.services)

    def prices_text(self, language: Language) -> str:
        return "; ".join(f"{s.name.get(language)}: {s.price_text(language)}"
            for s in self.services
            if s.price_text(language)
        )

    def template_for(self, intent: str | None, language: Language) -> str:
        """The template text for an intent, falling back to the default one."""
        key = (intent or DEFAULT_INTENT).lower()
        template = self.templates.get(key) or self.templates[DEFAULT_INTENT]
        return template.get(language)

    def render(self, text: str, language: Language, **extra: str) -> str:
        values = {
            **extra,
            "business": self.name,
            "hours": self.hours.get(language),
            "services": self.services_text(language),
            "prices": self.prices_text(language),
            "sign_off": self.sign_off.get(language),
            "phone": self.phone,
        }
        return text.format_map(values).strip()


def load_profile(path: Path | str) -> Profile:
    """Read and check a profile; raises ProfileError with the file and the reason."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(path, f"invalid YAML: {exc}") from exc
    return parse_profile(raw, source=path)


def parse_profile(raw: object, *, source: Path | str = "<profile>") -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(source, "expected a mapping at the top level")
    try:
        profile = msgspec.convert(raw, Profile)
    except msgspec.ValidationError as exc:
        raise ProfileError(source, str(exc)) from exc
    _check(profile, source)
    return profile


def _check(profile: Profile, source: Path | str) -> None:
    if not profile.name.strip():
        raise ProfileError(source, "`name` must not be empty")
    if DEFAULT_INTENT not in profile.templates:
        raise ProfileError(source, f"`templates` must contain a `{DEFAULT_INTENT}` entry")
    if profile.max_reply_chars < 40:
        raise ProfileError(source, "`max_reply_chars` must be at least 40")
    if profile.opening_hours is not None:
        try:
            check(profile.opening_hours)
        except HoursError as exc:
            raise ProfileError(source, f"`opening_hours`: {exc}") from exc
    if profile.after_hours_reply.enabled and profile.opening_hours is None:
        raise ProfileError(source, "`after_hours_reply` is enabled but `opening_hours` is not set")
    for language in LANGUAGES:
        _check_text(
            profile.after_hours_reply.text.get(language),
            f"after_hours_reply.text.{language}",
            AFTER_HOURS_FIELDS,
            source,
        )
    for intent, template in profile.templates.items():
        if intent != intent.lower():
            raise ProfileError(source, f"template intent `{intent}` must be lower case")
        for language in LANGUAGES:
            _check_text(template.get(language), f"templates.{intent}.{language}", TEMPLATE_FIELDS, source)


def _check_text(text: str, where: str, allowed_fields: frozenset[str], source: Path | str) -> None:
    if not text.strip():
        raise ProfileError(source, f"`{where}` is empty")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        raise ProfileError(source, f"`{where}`: {exc}") from exc
    unknown = fields - allowed_fields
    if unknown:
        allowed = ", ".join(sorted(allowed_fields))
        raise ProfileError(
            source,
            f"`{where}` uses unknown placeholder(s) {sorted(unknown)}; allowed: {allowed}",
        )
