"""Settings of the sender (REPLYLINE_* variables; see docs/sender.md)."""

from __future__ import annotations

from typing import Literal

from libs.settings import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN, AtLeastOne, CommonSettings, Positive


class SenderSettings(CommonSettings, frozen=True, kw_only=True):
    #: "auto" (Twilio when real credentials are set, else console), "twilio" or "console".
    sender_transport: Literal["auto", "twilio", "console"] = "auto"
    #: Sending number; empty means business_number (unless a Messaging Service is set).
    twilio_from_number: str = ""
    twilio_messaging_service_sid: str = ""
    #: Override of https://api.twilio.com (tests, egress proxies).
    twilio_api_base_url: str = ""
    #: Bound on one Twilio API call; a create still unanswered then is abandoned (UNKNOWN).
    twilio_timeout_s: Positive = 15.0
    #: A SENDING row's lease lasts twilio_timeout_s + this margin on the database clock,
    #: so no other worker takes it over while the first attempt could still be in flight.
    send_lease_margin_s: Positive = 15.0
    #: Delays between attempts after transient provider errors (429, 5xx).
    send_backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0)
    #: Attempts before a transiently failing message becomes FAILED_SEND.
    max_send_attempts: AtLeastOne = 5
    #: The sweep re-drives outbox rows whose event was lost.
    sweep_interval_s: float = 15.0
    #: How long a row may sit unfinished before the sweep assumes its event was lost.
    sweep_grace_s: float = 10.0
    #: Extra time the scheduler gets to fire a deferral timer before the sweep steps in.
    deferred_grace_s: float = 60.0
    #: Lead-facing messages go out only inside this local window [start, end).
    quiet_hours_start: str = "08:00"
    quiet_hours_end: str = "21:00"
    #: Whether a person's reply to a lead (outbound.human) waits for the quiet-hours
    #: window too. Default false: someone answering a lead who just wrote is a reply,
    #: not a campaign message, and goes at once (docs/sender.md, "Quiet hours").
    human_reply_quiet_hours: bool = False
    #: Zone used when neither the contact nor the number tells one.
    quiet_hours_default_tz: str = "America/New_York"
    #: Reconciliation looks for provider messages created this long before the attempt.
    reconcile_slack_s: float = 60.0

    @property
    def send_lease_s(self) -> float:
        """How long a worker's lease on an outbox row lasts (see docs/sender.md)."""
        return self.twilio_timeout_s + self.send_lease_margin_s

    @property
    def twilio_configured(self) -> bool:
        """Real credentials are present (the dev placeholders do not count)."""
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and self.twilio_account_sid != DEV_TWILIO_ACCOUNT_SID
            and self.twilio_auth_token != DEV_TWILIO_AUTH_TOKEN
        )

    @property
    def status_callback_url(self) -> str:
        base = self.public_base_url.rstrip("/")
        return f"{base}/twilio/status" if base else ""
