"""The naive design the ingest benchmark compares against: Flask + SQLite, check-then-insert.

What a first version of an SMS webhook usually looks like: a sync Flask view under
gunicorn (2 sync workers), the twilio ``RequestValidator``, one SQLite file with
default settings, a connection per request, SELECT the MessageSid and INSERT it
when absent (a race under concurrency: two retries can both insert), no event
bus. It does *less* than ingest (no publish, no audit row); it is the yardstick
for the "4x the baseline" target.

    BASELINE_DB=/tmp/b.sqlite BASELINE_AUTH_TOKEN=... BASELINE_PUBLIC_URL=https://... \
      gunicorn -w 2 -k sync -b 127.0.0.1:8090 bench.baselines.flask_sqlite:app
"""

from __future__ import annotations

import json
import os
import sqlite3

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

DB = os.environ.get("BASELINE_DB", "baseline.sqlite")
PUBLIC = os.environ.get("BASELINE_PUBLIC_URL", "http://127.0.0.1:8090")
validator = RequestValidator(os.environ.get("BASELINE_AUTH_TOKEN", ""))
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_sid TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    body TEXT NOT NULL,
    raw TEXT NOT NULL,
    received_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS inbound_messages_sid ON inbound_messages (message_sid);
"""

app = Flask(__name__)


def init_db() -> None:
    conn = sqlite3.connect(DB)
    conn.executescript(SCHEMA)
    conn.close()


@app.post("/twilio/sms")
def inbound_sms() -> Response:
    url = PUBLIC + request.full_path.rstrip("?")
    if not validator.validate(url, request.form, request.headers.get("X-Twilio-Signature", "")):
        abort(403)
    sid = request.form.get("MessageSid", "")
    if not sid:
        abort(400)
    conn = sqlite3.connect(DB, timeout=30)
    try:
        seen = conn.execute("SELECT 1 FROM inbound_messages WHERE message_sid = ?", (sid,)).fetchone()
        if seen is None:
            conn.execute(
                "INSERT INTO inbound_messages (message_sid, from_number, to_number, body, raw) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    sid,
                    request.form.get("From", ""),
                    request.form.get("To", ""),
                    request.form.get("Body", ""),
                    json.dumps(request.form.to_dict()),
                ),
            )
            conn.commit()
    finally:
        conn.close()
    return Response(TWIML, mimetype="text/xml")


init_db()
