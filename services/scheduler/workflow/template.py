"""``{{token}}`` substitution from a contact's fields (first_name, custom fields, ...)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

TOKEN = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
# Characters literal URL text keeps as written (RFC 3986 delimiters and '%' escapes).
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"


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


def url_problems(url: str) -> list[str]:
    """Why an http step's ``url`` template is refused: scheme and host must be literal.

    A token may fill path segments, the query or the fragment, never the part
    that says where the request goes (a lead could otherwise pick the host).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return ["url must start with http:// or https://"]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "{{" in scheme or "{{" in authority or "}}" in authority:
        return ["url: scheme and host must be literal; a {{token}} may only fill the path or the query"]
    if not authority:
        return ["url has no host"]
    return []


def render_url(url: str, values: Mapping[str, Any]) -> str:
    """Render a URL template, encoding each value for the component it lands in.

    Path (and fragment) values are one segment (``quote(safe='')``, dots too, so
    ``..`` cannot climb); query values are ``quote_plus``-encoded, so ``&``, ``=``
    and ``#`` cannot add parameters. The literal text stays as written.
    """

    def encoder(component: str) -> Any:
        def value_of(match: re.Match[str]) -> str:
            value = lookup(values, match.group(1))
            text = "" if value is None else str(value)
            if component == "query":
                return quote_plus(text)
            return quote(text, safe="").replace(".", "%2E")

        return value_of

    def part(text: str, component: str, safe: str) -> str:
        # Literal text is quoted too (keeping its delimiters and %-escapes), so the
        # result is fully encoded and is sent as is, never re-normalised.
        out, last = [], 0
        for match in TOKEN.finditer(text):
            out.append(quote(text[last : match.start()], safe=safe))
            out.append(encoder(component)(match))
            last = match.end()
        out.append(quote(text[last:], safe=safe))
        return "".join(out)

    scheme, sep, rest = url.partition("://")
    cut = len(re.split(r"[/?#]", rest, maxsplit=1)[0])
    prefix, rest = scheme + sep + rest[:cut], rest[cut:]  # scheme and host are literal
    # Tokens hold no '?' or '#', so the template's own delimiters split it.
    head, hash_, fragment = rest.partition("#")
    path, question, query = head.partition("?")
    return (
        prefix
        + part(path, "path", _SAFE_PATH)
        + question
        + part(query, "query", _SAFE_QUERY)
        + hash_
        + part(fragment, "fragment", _SAFE_QUERY)
    )


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
