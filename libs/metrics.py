"""Prometheus metrics shared by all services (one registry per process, labelled by service).

Every metric is defined here, so every service's /metrics lists every name (HELP/TYPE
lines) even before its first sample; each service increments the ones it owns (see
docs/operations.md, "Metrics", for which service increments which and where). Label
values are small closed sets (rule names, statuses, event types): never a number,
a thread or an id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter(
    "replyline_events_handled_total",
    "Events settled by a service's consumer, by event type and outcome (ack, retry, dlq).",
    ["service", "event_type", "outcome"],
)
SERVICE_READY = Gauge("replyline_service_ready", "1 when the service reports ready, else 0.", ["service"])

# ingest
WEBHOOKS_RECEIVED = Counter(
    "replyline_webhooks_received_total",
    "Webhooks accepted by ingest, by kind (sms, status, lead, voice) and result (recorded, duplicate).",
    ["kind", "result"],
)

# router
ROUTING_DECISIONS = Counter(
    "replyline_routing_decisions_total",
    "Inbound messages routed, by the rule that decided and the resulting status.",
    ["rule", "status"],
)

# drafter
DRAFTS_CREATED = Counter(
    "replyline_drafts_created_total",
    "Draft versions created, by source (llm, template, edit).",
    ["source"],
)
DRAFT_DECISIONS = Counter(
    "replyline_draft_decisions_total",
    "Owner decisions on drafts, by action (approve, reject, edit, unclear), source (sms, api, "
    "dashboard) and outcome (accepted, refused, clarify). Edit rate: accepted edits / accepted.",
    ["action", "source", "outcome"],
)
DRAFTS_EXPIRED = Counter(
    "replyline_drafts_expired_total", "Drafts undecided past the expiry (owner alerted)."
)
LLM_REQUESTS = Counter(
    "replyline_llm_requests_total",
    "Calls to an LLM provider, by service, provider label, model and outcome (ok, error).",
    ["service", "provider", "model", "outcome"],
)
LLM_TOKENS = Counter(
    "replyline_llm_tokens_total",
    "Tokens reported by LLM providers, by service, provider, model and kind (prompt, completion).",
    ["service", "provider", "model", "kind"],
)
LLM_COST = Counter(
    "replyline_llm_cost_usd_total",
    "Estimated LLM spend in USD (configured price per model), by service, provider and model.",
    ["service", "provider", "model"],
)

# sender
SENDS = Counter(
    "replyline_sends_total",
    "Outbound messages settled by the sender, by status (sent, failed, refused, deferred) and kind.",
    ["status", "kind"],
)
DELIVERY_STATUS = Counter(
    "replyline_delivery_status_total",
    "Provider delivery callbacks recorded by the sender, by status (delivered, undelivered, ...).",
    ["status"],
)

# scheduler
TIMERS = Counter(
    "replyline_timers_total",
    "Durable timers, by kind and what happened (set, fired, cancelled, skipped).",
    ["kind", "event"],
)
TIMERS_PENDING = Gauge("replyline_timers_pending", "Timers armed and not yet fired, by kind.", ["kind"])

# the runner (libs/service.py), for every consumer service
OUTBOX_PENDING = Gauge(
    "replyline_outbox_pending",
    "Rows in the service's event outbox: committed events not yet published and deleted "
    "(near 0 while NATS is up; growing means events wait for the sweeper).",
    ["service"],
)
CONSUMER_PENDING = Gauge(
    "replyline_consumer_pending",
    "Events in PIPELINE not yet delivered to the service's durable consumer (lag).",
    ["service"],
)
CONSUMER_ACK_PENDING = Gauge(
    "replyline_consumer_ack_pending",
    "Events delivered to the service's consumer and not yet acknowledged.",
    ["service"],
)
CONSUMER_REDELIVERED = Gauge(
    "replyline_consumer_redelivered",
    "Events currently redelivered (delivered more than once) to the service's consumer.",
    ["service"],
)

# the system aggregate (ingest's GET /health/system)
DLQ_DEPTH = Gauge("replyline_dlq_depth", "Events in the DLQ stream, as of the last /health/system.")
SYSTEM_READY = Gauge("replyline_system_ready", "1 when /health/system last reported ready, else 0.")


def event_type_of(subject: str) -> str:
    """``inbound.received.15551234567`` -> ``inbound.received``."""
    return subject.rsplit(".", 1)[0]

# --- human takeover (docs/drafter.md, "Human takeover") ---------------------------
TAKEOVERS = Counter(
    "replyline_takeovers_total",
    "Threads put in HUMAN_TAKEOVER (started) or handed back to the AI (ended, by reason).",
    ["event", "reason"],
)
HUMAN_REPLIES = Counter(
    "replyline_human_replies_total",
    "Free-text replies a person sent a lead, by channel and outcome (accepted, refused).",
    ["channel", "outcome"],
)
TIME_TO_FIRST_HUMAN_REPLY = Histogram(
    "replyline_time_to_first_human_reply_seconds",
    "From the oldest open manual-queue item of a thread to the first human reply to it.",
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800),
)
