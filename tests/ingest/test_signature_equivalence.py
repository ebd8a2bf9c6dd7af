"""Ingest's signature check answers exactly what twilio's RequestValidator.validate answers."""

from __future__ import annotations

import random
from urllib.parse import urlparse

import pytest
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator, add_port, remove_port

from services.ingest.signature import SignatureCheck

TOKEN = "12345678901234567890123456789012"
URLS = [
    "https://example.ngrok.app/twilio/sms",
    "https://example.ngrok.app:443/twilio/sms",
    "http://127.0.0.1:8080/twilio/sms",
    "http://example.com/prefix/twilio/sms?a=1&b=%20x",
    "https://Example.com:8443/twilio/sms?",
]
NAMES = ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "Ünïcode", ""]
VALUES = ["", "SM" + "a" * 32, "+15551234567", "Hi, price?", "0", "1", "ñ 😀", "a&b=c", " x "]


def random_form(rng: random.Random) -> MultiDictProxy[str]:
    pairs = [(rng.choice(NAMES), rng.choice(VALUES)) for _ in range(rng.randint(0, 8))]
    return MultiDictProxy(MultiDict(pairs))


@pytest.mark.parametrize("algorithm", [HMAC_SHA1, HMAC_SHA256])
def test_same_answer_as_twilio_for_signed_forged_and_port_variants(algorithm: str) -> None:
    rng = random.Random(15)
    twilio = RequestValidator(TOKEN)
    checked = 0
    for url in URLS:
        base, _, raw_path = url.partition("/twilio")
        check = SignatureCheck(TOKEN, base)
        parsed = urlparse(url)
        for _ in range(60):
            form = random_form(rng)
            other = random_form(rng)
            candidates = [
                twilio.compute_signature(remove_port(parsed), form, algorithm),
                twilio.compute_signature(add_port(parsed), form, algorithm),
                twilio.compute_signature(url, other, algorithm),  # another form's signature
                RequestValidator("another-token").compute_signature(url, form, algorithm),
                "",
                "not base64 ü",
            ]
            for signature in candidates:
                expected = bool(signature) and twilio.validate(url, form, signature, algorithm)
                result = check.check(
                    signature=signature,
                    settings_header=f"key=k,algorithm={algorithm}",
                    raw_path="/twilio" + raw_path,
                    seen_url=lambda: "unused",
                    form=form,
                )
                assert result.ok is expected, (url, list(form.items()), signature)
                checked += expected
    assert checked > 100  # the valid signatures were among them, not only refusals


def test_without_a_public_base_url_the_url_seen_is_checked() -> None:
    url = "http://127.0.0.1:8080/twilio/sms"
    form = MultiDictProxy(MultiDict([("Body", "hi")]))
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    result = SignatureCheck(TOKEN, "").check(
        signature=signature, settings_header=None, raw_path="/twilio/sms", seen_url=lambda: url, form=form
    )
    assert result.ok and result.url == url
