"""http steps: one webhook call with a timeout and retries on transient failures."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger("webhook")


class WebhookError(Exception):
    pass


async def call(
    session: aiohttp.ClientSession,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
    timeout_s: float,
    retries: int,
    idempotency_key: str,
    backoff_s: float = 0.5,
) -> dict[str, Any]:
    """Call ``url``; retry connection errors, timeouts, 429 and 5xx; return status and body.

    4xx answers (other than 429) are final: repeating the same request cannot help.
    """
    request_headers = {"Idempotency-Key": idempotency_key, **headers}
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            async with session.request(
                method,
                url,
                headers=request_headers,
                json=body if body is not None and method != "GET" else None,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                text = await response.text()
                if response.status < 400:
                    return {"status": response.status, "body": text[:2000], "attempts": attempt + 1}
                last_error = f"HTTP {response.status}: {text[:200]}"
                if response.status != 429 and response.status < 500:
                    break
        except (aiohttp.ClientError, TimeoutError) as err:
            last_error = f"{type(err).__name__}: {err}"
        log.warning("webhook_attempt_failed", url=url, attempt=attempt + 1, error=last_error)
    raise WebhookError(last_error)
