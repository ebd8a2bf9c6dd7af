"""The owner dashboard served by ingest under /dashboard (see views.py)."""
