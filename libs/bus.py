"""NATS / JetStream: connection, streams, publishing.

Stream, subject, consumer and KV names carry the settings' ``namespace`` so that
test runs (or several deployments) can share one server. With the default empty
namespace the names are exactly those of DESIGN.md: ``PIPELINE``, ``DLQ``,
``timers`` and subjects ``<domain>.<event>.<thread>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from libs.events import Event, encode
from libs.settings import CommonSettings, SettingsError, nats_servers
from libs.tracing import outgoing_traceparent

log = structlog.get_logger("bus")

DOMAINS = ("inbound", "draft", "outbound", "contact", "lead", "call", "timer", "replay")
DAY_S = 86400.0

# Headers the DLQ copy adds to the original ones.
H_DLQ_REASON = "Replyline-Dlq-Reason"
H_DLQ_SUBJECT = "Replyline-Original-Subject"
H_DLQ_SEQ = "Replyline-Original-Seq"
H_DLQ_CONSUMER = "Replyline-Consumer"
H_DLQ_DELIVERIES = "Replyline-Deliveries"
#: On a replayed event: its PIPELINE sequence when first published (the order it keeps).
H_REPLAY_SEQ = "Replyline-Replay-Seq"


def auth_options(settings: CommonSettings) -> dict[str, Any]:
    """nats-py connect options for the configured credentials (none: as in the URL).

    With a user, replies come to ``_INBOX.<user>.>`` instead of ``_INBOX.>``, so
    the server config can let each user read its own replies only (and not the
    JetStream deliveries fetched by another service).
    """
    options: dict[str, Any] = {}
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_user:
        password = settings.nats_password
        if settings.nats_password_file:
            try:
                password = Path(settings.nats_password_file).read_text().strip()
            except OSError as exc:
                where = f"REPLYLINE_NATS_PASSWORD_FILE={settings.nats_password_file}"
                raise SettingsError(f"{where}: cannot read ({exc.strerror})") from None
        user = settings.nats_user
        options.update(user=user, password=password, inbox_prefix=f"_INBOX.{user}")
    return options


class Bus:
    """A connected NATS client with the project's naming rules."""

    def __init__(self, nc: NATS, settings: CommonSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        ns = settings.namespace
        self.prefix = f"{ns}." if ns else ""
        self.stream = f"{ns}_PIPELINE" if ns else "PIPELINE"
        self.dlq_stream = f"{ns}_DLQ" if ns else "DLQ"

    @classmethod
    async def connect(cls, settings: CommonSettings, name: str, **options: Any) -> Bus:
        async def on_error(exc: Exception) -> None:
            log.warning("nats_error", error=str(exc))

        async def on_disconnect() -> None:
            log.warning("nats_disconnected")

        async def on_reconnect() -> None:
            log.info("nats_reconnected")

        # A list (not the comma-separated string, which nats-py would take as one URL):
        # the client connects to one of them and fails over to the others.
        nc = await nats.connect(
            nats_servers(settings.nats_url),
            name=name,
            **auth_options(settings),
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            **options,
        )
        return cls(nc, settings)

    # --- names -------------------------------------------------------------

    def subject_for(self, tag: str, thread: str = "*") -> str:
        return f"{self.prefix}{tag}.{thread}"

    def subject_of(self, event: Event) -> str:
        return self.prefix + event.subject()

    def replay_subject(self, consumer: str, original: str) -> str:
        """Where `replyline replay` re-delivers an event for one service's consumer only."""
        return f"{self.prefix}replay.{consumer}.{self.unprefixed(original)}"

    def kv_name(self, bucket: str) -> str:
        return f"{self.settings.namespace}_{bucket}" if self.settings.namespace else bucket

    def unprefixed(self, subject: str) -> str:
        return subject[len(self.prefix) :] if self.prefix else subject

    def advisory_subjects(self, consumer: str = "*") -> list[str]:
        return [
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{consumer}",
            f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{self.stream}.{consumer}",
        ]

    # --- streams -----------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Declare PIPELINE and DLQ; safe to call from every replica at once."""
        s = self.settings
        await self._ensure_stream(
            StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}{d}.>" for d in DOMAINS],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=s.stream_max_age_days * DAY_S,
                duplicate_window=s.duplicate_window_s,
                discard=DiscardPolicy.OLD,
                num_replicas=s.nats_replicas,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=self.dlq_stream,
                subjects=[*self.advisory_subjects(), f"{self.prefix}dlq.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=s.stream_max_age_days * DAY_S,
                duplicate_window=s.duplicate_window_s,
                num_replicas=s.nats_replicas,
            )
        )

    async def _ensure_stream(self, config: StreamConfig) -> None:
        try:
            await self.js.add_stream(config)
        except BadRequestError:
            # Exists with a different config (e.g. a changed max_age): update it.
            await self.js.update_stream(config)

    async def stream_exists(self, name: str) -> bool:
        try:
            await self.js.stream_info(name)
        except NotFoundError:
            return False
        return True

    # --- publishing ----------------------------------------------------------

    async def publish(self, event: Event, *, msg_id: str | None = None, timeout: float = 5.0) -> PubAck:
        """Publish with Nats-Msg-Id (dedup) and traceparent; returns the stream ack."""
        headers = {
            "Nats-Msg-Id": msg_id or event.dedup_id(),
            "traceparent": outgoing_traceparent(),
        }
        return await self.js.publish(self.subject_of(event), encode(event), headers=headers, timeout=timeout)

    async def close(self) -> None:
        """Drain (flush what was published, let subscriptions finish); close if NATS is gone."""
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except Exception as exc:  # reconnecting or timed out: nothing left to flush to
            log.warning("nats_drain_failed", error=repr(exc))
            await self.nc.close()
