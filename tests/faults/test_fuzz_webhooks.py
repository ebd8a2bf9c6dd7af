"""Fuzzing ingest's public endpoints: never a 5xx, never a crashed service.

Random and mutated Twilio payloads (signed correctly, so they reach the parser and,
when acceptable, the router and drafter), wrong and missing signatures, huge bodies,
invalid UTF-8 (raw and percent-encoded), NUL characters, wrong content types,
duplicated keys, random JSON for the lead and API endpoints. The seed is printed
and can be replayed with REPLYLINE_FUZZ_SEED.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import string
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import aiohttp
import pytest

from libs.events import DraftCreated
from tests.faults.running import running_stack
from tests.faults.traffic import Follower, Twilio
from testsupport.observe import read_stream
from testsupport.stack import ACCOUNT_SID, BUSINESS
from testsupport.stack_webhooks import LEAD_TEXT, inbound_form, new_sid, sign

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

TWILIO_PATHS = ("/twilio/sms", "/twilio/status")
WEIRD = [
    "",
    " ",
    "\t\n",
    "STOP",
    "stop ",
    "YES",
    "YES 1",
    "EDIT 1 " + "x" * 2000,
    "🙂" * 400,
    "\u202ereversed",
    "\uff28\uff45\uff4c\uff4c\uff4f",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "%00",
    "\\u0000",
    "a" * 70000,
    "日本語のメッセージ",
    "¿Cuánto cuesta?",
    "\u200b\u200b",
    "NaN",
    "-1",
    "1e309",
]
NUMBERS = ["", "+", "abc", "+15551234567", "+1", "+999999999999999999999", "15551234567",
           "+4420 7946 0958", "whatsapp:+15551234567", "+1555123456" + "7" * 50, "-1"]  # fmt: skip


@dataclass
class Case:
    label: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def form_headers(signature: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        h["X-Twilio-Signature"] = signature
    return h


def mutated_form(rnd: random.Random) -> dict[str, str]:
    form = inbound_form(new_sid(), rnd.choice(NUMBERS[3:4] * 5 + NUMBERS), rnd.choice(WEIRD))
    for _ in range(rnd.randint(0, 4)):
        op = rnd.random()
        key = rnd.choice([*form, "MediaUrl0", "MediaContentType0", "OptOutType", "Extra"])
        if op < 0.3:
            form.pop(key, None)
        elif op < 0.6:
            form[key] = rnd.choice(WEIRD + NUMBERS + [str(rnd.randint(-(10**6), 10**6))])
        else:
            form[key] = "".join(rnd.choice(string.printable) for _ in range(rnd.randint(0, 300)))
    return form


def status_form(rnd: random.Random) -> dict[str, str]:
    form = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": BUSINESS,
            "To": rnd.choice(NUMBERS), "MessageSid": rnd.choice([new_sid(), "", "x" * 500]),
            "MessageStatus": rnd.choice(["delivered", "failed", "undelivered", "", "??", "🙂"]),
            "ErrorCode": rnd.choice(["", "30007", "abc", "-1", "9" * 40])}  # fmt: skip
    if rnd.random() < 0.3:
        form.pop(rnd.choice(list(form)))
    return form


def make_case(rnd: random.Random) -> Case:
    kind = rnd.randrange(12)
    path = rnd.choice(TWILIO_PATHS)
    if kind == 0:  # mutated inbound, correctly signed: reaches the parser and the pipeline
        form = mutated_form(rnd)
        return Case("signed-mutated-sms", "POST", "/twilio/sms", urlencode(form).encode(),
                    form_headers(sign(form, "/twilio/sms")))  # fmt: skip
    if kind == 1:  # mutated status callback, correctly signed
        form = status_form(rnd)
        return Case("signed-mutated-status", "POST", "/twilio/status", urlencode(form).encode(),
                    form_headers(sign(form, "/twilio/status")))  # fmt: skip
    if kind == 2:  # wrong signature (other token, other URL, garbage, or none)
        form = inbound_form(new_sid(), "+15551234567", LEAD_TEXT)
        sig = rnd.choice([sign(form, path, token="not-the-token"), sign(form, "/elsewhere"),
                          "", "%%%", "A" * 5000, None])  # fmt: skip
        return Case("bad-signature", "POST", path, urlencode(form).encode(), form_headers(sig))
    if kind == 3:  # random bytes with the form content type
        body = rnd.randbytes(rnd.randint(0, 4000))
        return Case("random-bytes", "POST", path, body, form_headers(rnd.choice([None, "x"])))
    if kind == 4:  # invalid UTF-8, raw or percent-encoded, or NUL, in an otherwise valid form
        form = inbound_form(new_sid(), "+15551234567", "hello")
        raw = urlencode(form)
        bad = rnd.choice(["%FF%FE", "%C3%28", "%00", "%ED%A0%80", "%F8%88%80%80%80"])
        body = raw.replace("Body=hello", f"Body=hel{bad}lo").encode()
        if rnd.random() < 0.5:
            body = body.replace(b"hel", b"hel\xff\xfe")
        return Case("invalid-utf8", "POST", path, body, form_headers(sign(form, path)))
    if kind == 5:  # huge bodies
        size = rnd.choice([70_000, 1_000_000, 8_000_000])
        body = ("Body=" + "a" * size).encode()
        return Case(f"huge-{size}", "POST", path, body, form_headers("x"))
    if kind == 6:  # wrong content types
        ctype = rnd.choice(["application/json", "text/plain", "multipart/form-data; boundary=x",
                            "application/x-www-form-urlencoded; charset=latin-1", ""])  # fmt: skip
        body = rnd.choice([b'{"MessageSid": "SM1"}', b"--x\r\n\r\n--x--", b"MessageSid=SM1"])
        return Case("content-type", "POST", path, body, {"Content-Type": ctype, "X-Twilio-Signature": "x"})
    if kind == 7:  # duplicated keys and odd encodings, signed over the last values
        form = inbound_form(new_sid(), "+15551234567", "hi")
        extra = f"&MessageSid={new_sid()}&Body={quote('again')}&&=&a=b=c&%=%"
        return Case("dup-keys", "POST", "/twilio/sms", (urlencode(form) + extra).encode(),
                    form_headers(sign(form)))  # fmt: skip
    if kind == 8:  # leads: random JSON, with and without (wrong) tokens
        body = rnd.choice([b"{}", b"[]", b"null", b'{"phone": 12}', b'{"phone": "abc"}',
                           b'{"phone": "+15551234567", "tags": 5}', rnd.randbytes(200),
                           b'{"phone": "' + b"9" * 10000 + b'"}'])  # fmt: skip
        headers = {"Content-Type": rnd.choice(["application/json", "text/plain"])}
        if rnd.random() < 0.7:
            headers["Authorization"] = rnd.choice(["Bearer nope", "Bearer ", "Basic eA==", "x"])
        return Case("leads", "POST", "/leads", body, headers)
    if kind == 9:  # owner API without a valid token
        path = rnd.choice(
            [
                "/api/drafts",
                "/api/queue",
                "/api/drafts/1/approve",
                "/api/drafts/%00/edit",
                "/api/threads/abc/pause",
                "/api/" + "x" * 3000,
            ]
        )
        method = "GET" if path in ("/api/drafts", "/api/queue") else "POST"
        return Case(
            "api",
            method,
            path,
            rnd.randbytes(50),
            {"Authorization": rnd.choice(["Bearer rl_" + "0" * 64, "Bearer"])},
        )
    if kind == 10:  # wrong methods and paths
        return Case("method", rnd.choice(["GET", "PUT", "DELETE", "PATCH"]), path, b"", {})
    form = mutated_form(rnd)  # unsigned mutated
    return Case("unsigned-mutated", "POST", path, urlencode(form).encode(), form_headers(None))


async def send(http: aiohttp.ClientSession, base: str, case: Case) -> int:
    try:
        async with http.request(case.method, base + case.path, data=case.body,
                                headers=case.headers) as resp:  # fmt: skip
            await resp.read()
            return resp.status
    except aiohttp.ClientError as exc:
        # A 413 may close the connection before the whole huge body was written.
        if case.label.startswith("huge"):
            return 413
        raise AssertionError(f"{case.label}: {exc!r}") from exc


async def test_fuzz_webhook_endpoints(scale: float) -> None:
    seed = int(os.environ.get("REPLYLINE_FUZZ_SEED", random.SystemRandom().randrange(10**9)))
    print(f"fuzz seed {seed} (replay with REPLYLINE_FUZZ_SEED={seed})")
    rnd = random.Random(seed)
    cases = [make_case(rnd) for _ in range(max(200, int(1500 * scale)))]
    results: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    server_errors: list[tuple[str, int, bytes]] = []
    async with running_stack() as run, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        queue = list(reversed(cases))

        async def worker() -> None:
            while queue:
                case = queue.pop()
                status = await send(http, run.ingest_url, case)
                results[case.label][status] += 1
                if status >= 500:
                    server_errors.append((case.label, status, case.body[:300]))

        await asyncio.gather(*(worker() for _ in range(8)))
        for label, statuses in sorted(results.items()):
            print(f"{label:22s} {dict(statuses)}")

        assert server_errors == [], f"5xx answers: {server_errors[:5]}"
        assert run.stack.crashed() == [], "a service died under fuzzing"
        # The fuzz reached the pipeline: some signed mutants were valid messages.
        assert results["signed-mutated-sms"][200] > 0
        assert not any(200 <= s < 300 for s in results["bad-signature"])
        assert not any(200 <= s < 300 for s in results["unsigned-mutated"])
        huge = [s for label, c in results.items() if label.startswith("huge") for s in c]
        assert set(huge) <= {413}

        # And everything still works afterwards: a real lead gets a draft.
        follower = await Follower().start(run.infra.nats.url, "PIPELINE", "draft.created.>")
        lead = "+13125551234"
        await Twilio(run.ingest_url, http).post(lead, LEAD_TEXT)
        assert await follower.wait_for(
            lambda: any(isinstance(e, DraftCreated) and e.to_number == lead
                        for e in follower.events), 60)  # fmt: skip
        await follower.stop()
        await asyncio.sleep(2)  # let retries of anything the fuzz broke reach the DLQ
        dlq = await read_stream(run.infra.nats.url, "DLQ", "dlq.>")
        print("DLQ after fuzzing:", [(h.get("Replyline-Dlq-Reason", "")[:120]) for *_, h in dlq])
        assert run.stack.crashed() == []
