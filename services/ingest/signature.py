"""X-Twilio-Signature checking against the URL Twilio actually called.

Twilio signs the full URL it requested (scheme, host, port if any, path and query)
plus the sorted form fields. Behind a tunnel or TLS-terminating proxy the URL the
app sees (``http://127.0.0.1:8080/twilio/sms``) is not that URL
(``https://example.ngrok.app/twilio/sms``), so the check uses the configured public
base URL, with and without the default port (as the twilio library does).

The check computes what twilio's ``RequestValidator.validate`` computes, with the same
URL variants (twilio's own ``add_port`` / ``remove_port``) and the same string to
sign, but it is on every webhook's path, so: the variants of a URL are worked out
once, the string to sign is built once for both variants, the second HMAC is
computed only when the first does not match, and the comparison is
``hmac.compare_digest``. tests/ingest/test_signature_equivalence.py holds it to
twilio's answer.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from multidict import MultiDictProxy
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    add_port,
    get_signature_algorithm,
    remove_port,
)

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_SETTINGS_HEADER",
    "SignatureCheck",
    "SignatureResult",
    "public_url",
]

#: hashlib names of the algorithms Twilio signs with.
_DIGESTS = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
#: Distinct URLs whose variants are kept (one per webhook path in practice).
_VARIANTS_KEPT = 64


def public_url(public_base_url: str, raw_path: str, fallback: Callable[[], str]) -> str:
    """The URL Twilio signed: the public base (which may carry a path prefix a proxy strips)
    joined with the path and query the request arrived with, or ``fallback()`` (the URL as
    this process saw it) when no public base is configured."""
    if not public_base_url:
        return fallback()
    return public_base_url.rstrip("/") + raw_path


def signed_fields(form: MultiDictProxy[str]) -> str:
    """What Twilio appends to the URL before signing: each field name with each of its
    distinct values, names and values sorted (twilio's ``compute_signature``)."""
    parts = []
    for name in sorted(set(form)):
        for value in sorted(set(form.getall(name))):
            parts.append(name + value)
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class SignatureResult:
    ok: bool
    reason: str  # "ok", "missing", "mismatch", "unsupported_algorithm"
    url: str  # the URL the signature was checked against, for the log line
    algorithm: str


class SignatureCheck:
    """Validates Twilio webhook signatures exactly as twilio's RequestValidator does."""

    def __init__(self, auth_token: str, public_base_url: str) -> None:
        self._key = auth_token.encode("utf-8")
        self._public_base_url = public_base_url
        self._variants: dict[str, tuple[str, str]] = {}

    def check(
        self,
        *,
        signature: str | None,
        settings_header: str | None,
        raw_path: str,
        seen_url: Callable[[], str],
        form: MultiDictProxy[str],
    ) -> SignatureResult:
        """``seen_url`` is called only without a public base URL (building it costs)."""
        url = public_url(self._public_base_url, raw_path, seen_url)
        algorithm = get_signature_algorithm(settings_header)
        if not signature:
            return SignatureResult(False, "missing", url, algorithm)
        digest = _DIGESTS.get(algorithm.upper())
        if digest is None:
            return SignatureResult(False, "unsupported_algorithm", url, algorithm)
        fields = signed_fields(form)
        expected = signature.encode("utf-8")
        ok = any(
            hmac.compare_digest(self._sign(variant + fields, digest), expected)
            for variant in self._url_variants(url)
        )
        return SignatureResult(ok, "ok" if ok else "mismatch", url, algorithm)

    def _sign(self, text: str, digest: str) -> bytes:
        return base64.b64encode(hmac.digest(self._key, text.encode("utf-8"), digest))

    def _url_variants(self, url: str) -> tuple[str, str]:
        """The URL without and with its default port, as twilio's validate tries them."""
        variants = self._variants.get(url)
        if variants is None:
            parsed = urlparse(url)
            variants = (remove_port(parsed), add_port(parsed))
            if len(self._variants) >= _VARIANTS_KEPT:
                self._variants.clear()  # query strings vary: keep the cache bounded
            self._variants[url] = variants
        return variants
