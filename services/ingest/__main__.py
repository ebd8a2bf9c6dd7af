"""``python -m services.ingest``: the HTTP front door (Twilio webhooks, leads, owner API)."""

from libs.service import run_service
from services.ingest.service import MIGRATIONS, builder
from services.ingest.settings import IngestSettings

if __name__ == "__main__":
    run_service(IngestSettings, name="ingest", build=builder(), migrations=MIGRATIONS)
