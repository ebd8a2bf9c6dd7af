"""``{{token}}`` substitution from a contact's fields (first_name, custom fields, ...)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

TOKEN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


def template_errors(text: str) -> list[str]:
    """Malformed tokens in ``text`` (a ``{{`` or ``}}`` that is not part of a token)."""
    rest = TOKEN.sub("", text)
    if "{{" in rest or "}}" in rest:
        return ["malformed {{token}} (use {{first_name}}, {{email}} or a custom field name)"]
    return []


def render(text: str, values: Mapping[str, Any]) -> str:
    """Replace tokens; a token the contact has no value for becomes empty, never literal braces."""

    def value_of(match: re.Match[str]) -> str:
        value = lookup(values, match.group(1))
        return "" if value is None else str(value)

    return TOKEN.sub(value_of, text)


def render_value(value: Any, values: Mapping[str, Any]) -> Any:
    """Render templates inside strings, lists and mappings (http bodies, field values)."""
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, list | tuple):
        return [render_value(item, values) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, values) for key, item in value.items()}
    return value


def lookup(values: Mapping[str, Any], name: str) -> Any:
    """Value of ``name``; ``fields.x`` reaches into custom fields explicitly."""
    if name in values:
        return values[name]
    head, _, tail = name.partition(".")
    nested = values.get(head)
    if tail and isinstance(nested, Mapping):
        return lookup(nested, tail)
    return None
