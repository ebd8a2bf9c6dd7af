"""X-Twilio-Signature checking against the URL Twilio actually called.

Twilio signs the full URL it requested (scheme, host, port if any, path and query)
plus the sorted form fields. Behind a tunnel or TLS-terminating proxy the URL the
app sees (``http://127.0.0.1:8080/twilio/sms``) is not that URL
(``https://example.ngrok.app/twilio/sms``), so the check uses the configured public
base URL; the twilio library already tries the URL with and without the default port.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import MultiDictProxy
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

__all__ = [
    "SIGNATURE_HEADER",
    "SIGNATURE_SETTINGS_HEADER",
    "SignatureCheck",
    "SignatureResult",
    "public_url",
]

_SUPPORTED = (HMAC_SHA1, HMAC_SHA256)


def public_url(public_base_url: str, raw_path: str, fallback: str) -> str:
    """The URL Twilio signed: the public base (which may carry a path prefix a proxy strips)
    joined with the path and query the request arrived with, or ``fallback`` (the URL as
    this process saw it) when no public base is configured."""
    if not public_base_url:
        return fallback
    return public_base_url.rstrip("/") + raw_path


@dataclass(frozen=True, slots=True)
class SignatureResult:
    ok: bool
    reason: str  # "ok", "missing", "mismatch", "unsupported_algorithm"
    url: str  # the URL the signature was checked against, for the log line
    algorithm: str


class SignatureCheck:
    """Validates Twilio webhook signatures with twilio's own RequestValidator."""

    def __init__(self, auth_token: str, public_base_url: str) -> None:
        self._validator = RequestValidator(auth_token)
        self._public_base_url = public_base_url

    def check(
        self,
        *,
        signature: str | None,
        settings_header: str | None,
        raw_path: str,
        seen_url: str,
        form: MultiDictProxy[str],
    ) -> SignatureResult:
        url = public_url(self._public_base_url, raw_path, seen_url)
        algorithm = get_signature_algorithm(settings_header)
        if not signature:
            return SignatureResult(False, "missing", url, algorithm)
        if algorithm.upper() not in _SUPPORTED:
            return SignatureResult(False, "unsupported_algorithm", url, algorithm)
        ok = self._validator.validate(url, form, signature, algorithm)
        return SignatureResult(ok, "ok" if ok else "mismatch", url, algorithm)
