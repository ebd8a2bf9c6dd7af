"""``python -m services.ingest``: every service's entry point is these same lines (see libs/service.py)."""

from libs.service import run_service
from services import SERVICES
from services.ingest.service import SPEC

if __name__ == "__main__":
    run_service(SPEC, fleet=SERVICES)
