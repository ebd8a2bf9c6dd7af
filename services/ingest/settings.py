"""Ingest settings: the HTTP listener, webhook limits and API authentication."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from libs.settings import DEV_TWILIO_AUTH_TOKEN, CommonSettings, Positive


class IngestSettings(CommonSettings, frozen=True, kw_only=True):
    http_host: str = "127.0.0.1"
    #: 8080 is what `replyline sms` and the dev stack expect; 0 picks a free port (tests).
    http_port: int = 8080
    #: Several ingest processes on one host share the port (SO_REUSEPORT, one per
    #: core). Off by default: a second ingest on a taken port must fail loudly, not
    #: silently take half the webhooks (e.g. a stale one left by a killed launcher).
    http_reuse_port: bool = False
    #: Twilio's inbound payload is a few KB even with 10 media URLs; anything far larger
    #: is not Twilio and is refused with 413 before it is read.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    #: A bootstrap admin API token accepted besides the hashed ones in api_tokens
    #: (handy for `replyline dev`); empty = only tokens created with
    #: `python -m services.ingest.tokens create`.
    api_token: str = ""
    #: How long the owner API waits for the drafter's reply over NATS request/reply.
    drafter_rpc_timeout_s: float = 3.0
    scheduler_rpc_timeout_s: float = 3.0
    #: Contact imports: how long each staging batch / the final commit may take in the scheduler.
    contact_import_timeout_s: float = 120.0
    #: How long a webhook waits for the JetStream ack before answering 503.
    publish_timeout_s: float = 5.0
    #: Inbound transactions in flight at once; webhooks arriving meanwhile share the next one.
    record_concurrency: int = 4
    #: Region used to read lead phone numbers written without a country code.
    default_region: str = "US"
    #: Dashboard login sessions last this long (an admin token is asked again after).
    dashboard_session_ttl_s: Positive = 12 * 3600.0
    #: Calls to the business number ring this phone (E.164, the owner's mobile); empty =
    #: no forwarding: the caller hears ``call_missed_message`` and gets the text-back.
    call_forward_number: str = ""
    #: Seconds the forwarded call rings before it counts as missed (Twilio's <Dial timeout>,
    #: which accepts 5 to 600).
    call_ring_timeout_s: Annotated[int, msgspec.Meta(ge=5, le=600)] = 20
    #: What a caller hears when nobody answers (or there is no forward number), before
    #: Replyline hangs up and texts them back. Empty = hang up without a message.
    call_missed_message: str = "Sorry, we can't take your call right now. We'll text you shortly."

    def __post_init__(self) -> None:
        super().__post_init__()
        # The dev token is in this repository: with it, anyone who can reach the listener
        # can forge Twilio webhooks (an owner's YES, a lead's START). Only a listener that
        # nothing else can reach may use it.
        dev_token = self.webhook_auth_token == DEV_TWILIO_AUTH_TOKEN
        if dev_token and not is_loopback_host(self.http_host):
            raise ValueError(
                f"REPLYLINE_TWILIO_AUTH_TOKEN must be set to the Twilio account's auth token: "
                f"ingest listens on {self.http_host or 'every interface'!r} (REPLYLINE_HTTP_HOST), "
                "not a loopback address, and the default dev token is public, so anyone "
                "could forge Twilio webhooks"
            )
        if dev_token and not is_loopback_host(urlsplit(self.public_base_url).hostname or ""):
            raise ValueError(
                "REPLYLINE_TWILIO_AUTH_TOKEN (twilio_auth_token) must be set when "
                "REPLYLINE_PUBLIC_BASE_URL is not a local address (the dev token is public "
                "and would let anyone forge Twilio webhooks)"
            )
        if self.call_forward_number and not re.fullmatch(r"\+[1-9]\d{6,14}", self.call_forward_number):
            raise ValueError(
                f"call_forward_number {self.call_forward_number!r} is not E.164 (+15551234567)"
            )

    @property
    def webhook_auth_token(self) -> str:
        """The secret Twilio signs with; the shared dev token on a local-only stack."""
        return self.twilio_auth_token or DEV_TWILIO_AUTH_TOKEN


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback IP literals (127.0.0.0/8, ::1). "0.0.0.0", "::"
    and "" mean every interface, and any other name may resolve anywhere: not loopback."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
