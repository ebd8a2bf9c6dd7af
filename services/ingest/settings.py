"""Ingest settings: the HTTP listener, webhook limits and API authentication."""

from __future__ import annotations

from urllib.parse import urlsplit

from libs.settings import DEV_TWILIO_AUTH_TOKEN, CommonSettings

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


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
    max_body_bytes: int = 64 * 1024
    #: A bootstrap admin API token accepted besides the hashed ones in api_tokens
    #: (handy for `replyline dev`); empty = only tokens created with
    #: `python -m services.ingest.tokens create`.
    api_token: str = ""
    #: How long the owner API waits for the drafter's reply over NATS request/reply.
    drafter_rpc_timeout_s: float = 3.0
    scheduler_rpc_timeout_s: float = 3.0
    #: How long a webhook waits for the JetStream ack before answering 503.
    publish_timeout_s: float = 5.0
    #: Inbound transactions in flight at once; webhooks arriving meanwhile share the next one.
    record_concurrency: int = 4
    #: Region used to read lead phone numbers written without a country code.
    default_region: str = "US"
    #: The drafter's LLM endpoints (same variables as the drafter's), probed by
    #: GET /health/system when the drafter does not report its own `llm` probe.
    #: Empty = "not configured" (the drafter drafts from templates).
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_fallback_base_url: str = ""
    llm_fallback_api_key: str = ""
    llm_probe_timeout_s: float = 5.0
    #: Dashboard login sessions last this long (an admin token is asked again after).
    dashboard_session_ttl_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.twilio_auth_token and not _is_loopback(self.public_base_url):
            raise ValueError(
                "twilio_auth_token must be set when public_base_url is not a local address "
                "(the dev token is public and would let anyone forge Twilio webhooks)"
            )
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes must be at least 1024")
        if self.dashboard_session_ttl_s <= 0:
            raise ValueError("dashboard_session_ttl_s must be positive")

    @property
    def webhook_auth_token(self) -> str:
        """The secret Twilio signs with; the shared dev token on a local-only stack."""
        return self.twilio_auth_token or DEV_TWILIO_AUTH_TOKEN


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOOPBACK_HOSTS
