"""Wiring of the sender: transport choice, outbox, sweep and handlers."""

from __future__ import annotations

from pathlib import Path

from libs.service import Built, Clock, ServiceContext, ServiceSpec
from services.sender.console import ConsoleTransport
from services.sender.handlers import build_handlers
from services.sender.outbox import Outbox
from services.sender.settings import SenderSettings
from services.sender.sweep import sweep_forever
from services.sender.transport import Transport
from services.sender.twilio_transport import TwilioTransport

NAME = "sender"
MIGRATIONS = Path(__file__).parent / "migrations"

def make_transport(settings: SenderSettings) -> Transport:
    use_twilio = settings.sender_transport == "twilio" or (
        settings.sender_transport == "auto" and settings.twilio_configured
    )
    if not use_twilio:
        return ConsoleTransport(from_number=settings.twilio_from_number or settings.business_number)
    return TwilioTransport(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=(
            settings.twilio_from_number
            or ("" if settings.twilio_messaging_service_sid else settings.business_number)
        ),
        messaging_service_sid=settings.twilio_messaging_service_sid,
        status_callback_url=settings.status_callback_url,
        api_base_url=settings.twilio_api_base_url,
        timeout=settings.twilio_timeout_s,
    )


async def build(ctx: ServiceContext[SenderSettings], clock: Clock) -> Built:
    """Tests pass a clock through the spec to stand in a given hour."""
    transport = make_transport(ctx.settings)
    ctx.stack.push_async_callback(transport.close)
    ctx.log.info("sender_transport", transport=transport.name)
    outbox = Outbox(ctx.resources, transport=transport, clock=clock)
    ctx.spawn(sweep_forever(outbox, ctx.stop), "sweep")
    return Built(build_handlers(outbox), {"outbox": outbox, "transport": transport})


SPEC = ServiceSpec(NAME, SenderSettings, build, MIGRATIONS)
