"""Prometheus metrics shared by all services (one registry per process, labelled by service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_HANDLED = Counter(
    "replyline_events_handled_total",
    "Events settled by a service's consumer, by event type and outcome (ack, retry, dlq).",
    ["service", "event_type", "outcome"],
)
SERVICE_READY = Gauge("replyline_service_ready", "1 when the service reports ready, else 0.", ["service"])


def event_type_of(subject: str) -> str:
    """``inbound.received.15551234567`` -> ``inbound.received``."""
    return subject.rsplit(".", 1)[0]
