"""``replyline sms``: play Twilio and post a signed inbound-SMS webhook to a running ingest.

    replyline sms --from +15551234567 "Hi, do you have time on Friday?"
    replyline sms --from +15551234567 --media https://example.com/photo.jpg "see photo"
    replyline sms --from +15550000001 "YES 4F2"          # the owner approving a draft

The request is what Twilio sends: a form with From, To, Body, MessageSid (SM + 32 hex),
NumMedia/MediaUrlN/MediaContentTypeN..., signed with X-Twilio-Signature by twilio's own
RequestValidator using the auth token from the settings (the shared dev token when none
is set). The signature covers the *public* URL (REPLYLINE_PUBLIC_BASE_URL or
--public-url), as Twilio's would, even when the request goes straight to --url.
"""

from __future__ import annotations

import argparse
import math
import mimetypes
import re
import secrets
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from libs.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from replyline.commands._config import load_settings
from replyline.commands._parser import subcommand
from services.ingest.settings import IngestSettings

DEFAULT_URL = "http://127.0.0.1:8080"
WEBHOOK_PATH = "/twilio/sms"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# The GSM 03.38 basic alphabet: messages made only of these are 160 characters a
# segment (153 when split); anything else makes the whole message UCS-2 (70 / 67).
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    summary = "post a signed Twilio-style inbound SMS to a running ingest"
    parser = subcommand(subparsers, "sms", run, help=summary, description=__doc__, raw=True)
    parser.add_argument("body", nargs="?", default="", help="the message text")
    parser.add_argument("--from", dest="from_number", required=True, help="sender, E.164 (+15551234567)")
    parser.add_argument(
        "--to", dest="to_number", help="the business number (default: settings business_number)"
    )
    parser.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="URL",
        help="attach a media URL (repeatable, at most 10)",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"where ingest listens (default {DEFAULT_URL})")
    parser.add_argument(
        "--public-url",
        help="base URL to sign against (default: settings public_base_url), e.g. the tunnel's",
    )
    parser.add_argument(
        "--message-sid", help="reuse a MessageSid, e.g. to replay what a Twilio retry looks like"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return parser


def new_message_sid(media: bool = False) -> str:
    return ("MM" if media else "SM") + secrets.token_hex(16)


def segments(body: str) -> int:
    if not body:
        return 1
    if set(body) <= _GSM7:
        single, multi = 160, 153
    else:
        single, multi = 70, 67
    return 1 if len(body) <= single else math.ceil(len(body) / multi)


def build_form(
    *,
    from_number: str,
    to_number: str,
    body: str,
    media: list[str],
    account_sid: str,
    message_sid: str,
) -> dict[str, str]:
    """The inbound-message webhook fields Twilio sends for an SMS/MMS."""
    form = {
        "ToCountry": "US",
        "SmsMessageSid": message_sid,
        "NumMedia": str(len(media)),
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "Body": body,
        "To": to_number,
        "NumSegments": str(segments(body)),
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "ApiVersion": "2010-04-01",
    }
    for index, url in enumerate(media):
        form[f"MediaUrl{index}"] = url
        guessed, _ = mimetypes.guess_type(url)
        form[f"MediaContentType{index}"] = guessed or "application/octet-stream"
    return form


def sign(auth_token: str, url: str, form: dict[str, str]) -> str:
    return str(RequestValidator(auth_token).compute_signature(url, form))


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        IngestSettings, section="ingest", label="replyline sms: configuration error", file=sys.stderr
    )
    if settings is None:
        return 2
    if not _E164.match(args.from_number):
        print(
            f"replyline sms: --from {args.from_number!r} is not E.164 (+15551234567)",
            file=sys.stderr,
        )
        return 2
    if len(args.media) > 10:
        print("replyline sms: Twilio delivers at most 10 media items", file=sys.stderr)
        return 2
    to_number = args.to_number or settings.business_number
    message_sid = args.message_sid or new_message_sid(bool(args.media))
    form = build_form(
        from_number=args.from_number,
        to_number=to_number,
        body=args.body,
        media=args.media,
        account_sid=settings.twilio_account_sid or DEV_TWILIO_ACCOUNT_SID,
        message_sid=message_sid,
    )
    post_url = args.url.rstrip("/") + WEBHOOK_PATH
    signed_url = (args.public_url or settings.public_base_url).rstrip("/") + WEBHOOK_PATH
    token = settings.twilio_auth_token or DEV_TWILIO_AUTH_TOKEN
    request = urllib.request.Request(
        post_url,
        data=urlencode(form).encode("utf-8"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(token, signed_url, form),
            "User-Agent": "TwilioProxy/1.1 (replyline sms)",
        },
        method="POST",
    )
    print(
        f"{args.from_number} -> {to_number}: {args.body!r}"
        + (f" + {len(args.media)} media" if args.media else "")
    )
    print(f"POST {post_url} (signed for {signed_url}) MessageSid={message_sid}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"failed: cannot reach {post_url}: {reason}", file=sys.stderr)
        print("is ingest running? (`replyline dev` starts the local stack)", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        print(f"accepted: HTTP {status}")
        return 0
    print(f"refused: HTTP {status}: {text.strip()}", file=sys.stderr)
    if status == 403:
        print(
            "the signature did not match: ingest and this command must share the auth token "
            "and the public URL (REPLYLINE_TWILIO_AUTH_TOKEN, REPLYLINE_PUBLIC_BASE_URL)",
            file=sys.stderr,
        )
    return 1
