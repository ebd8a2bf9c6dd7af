"""http steps: one webhook call with a timeout and retries on transient failures.

The URL is rendered from lead data, so where it goes is checked: only public
addresses are reachable unless the operator's allow-list
(``REPLYLINE_HTTP_STEP_ALLOW``: host names, IPs, CIDRs) names the destination.
The host is resolved and every address checked *before* connecting, and the
session's resolver checks again at connect time (a DNS answer that changes in
between cannot slip through); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

log = structlog.get_logger("webhook")

#: Most of a response body read (the rest is not downloaded); 2,000 characters are recorded.
MAX_RESPONSE_BYTES = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookError(Exception):
    pass


class BlockedDestination(WebhookError, OSError):
    """The URL resolves to an address http steps may not reach."""


class Destinations:
    """Which hosts and addresses http steps may call."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in allow:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.hosts.add(entry)

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(ip.version == net.version and ip in net for net in self.networks):
            return True
        return not _internal(ip)

    def check(self, host: str, addresses: Iterable[str]) -> None:
        if self.host_allowed(host):
            return
        for address in addresses:
            if not self.address_allowed(address):
                raise BlockedDestination(
                    f"destination {host} ({address}) is internal; "
                    "allow it with REPLYLINE_HTTP_STEP_ALLOW if it is meant to be called"
                )


def _internal(ip: IPAddress) -> bool:
    return bool(
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that refuses internal addresses at connect time."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self.destinations.check(host, (r["host"] for r in results))
        return results

    async def close(self) -> None:
        await self._inner.close()


def session(destinations: Destinations) -> aiohttp.ClientSession:
    """The client session http steps use (its resolver enforces ``destinations``)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=GuardedResolver(destinations)))


async def check_destination(url: str, destinations: Destinations) -> None:
    """Resolve ``url``'s host and refuse it before any connection if it is internal."""
    try:
        parsed = URL(url)
    except ValueError as err:
        raise WebhookError(f"bad url: {err}") from None
    host = parsed.host
    if parsed.scheme not in ("http", "https") or not host:
        raise WebhookError(f"bad url {url!r}")
    if destinations.host_allowed(host):
        return
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parsed.port or 0, type=socket.SOCK_STREAM
            )
        except OSError as err:
            raise WebhookError(f"cannot resolve {host}: {err}") from None
        addresses = [str(info[4][0]) for info in infos]
    destinations.check(host, addresses)


@dataclass(frozen=True)
class Request:
    """An http step's call, rendered for one contact (the scheduler's ``CallWebhook`` effect)."""

    method: str
    #: Already encoded per component (render_url).
    url: str
    headers: dict[str, str]
    body: Any
    timeout_s: float
    retries: int
    #: Sent as Idempotency-Key: a retried or repeated execution is the same call to the receiver.
    key: str


async def call(
    session: aiohttp.ClientSession,
    request: Request,
    *,
    destinations: Destinations,
    backoff_s: float = 0.5,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> dict[str, Any]:
    """Call ``request.url``; retry connection errors, timeouts, 429 and 5xx; return status and body.

    4xx answers (other than 429) are final: repeating the same request cannot help.
    A blocked destination is final too, and nothing is sent to it.
    """
    method, url, body, retries = request.method, request.url, request.body, request.retries
    await check_destination(url, destinations)
    request_headers = {**request.headers, "Idempotency-Key": request.key}
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            async with session.request(
                method,
                # Already encoded per component (render_url): sent as is, never
                # re-normalised (yarl would turn an encoded ".." back into a climb).
                URL(url, encoded=True),
                headers=request_headers,
                json=body if body is not None and method != "GET" else None,
                timeout=aiohttp.ClientTimeout(total=request.timeout_s),
                allow_redirects=False,
            ) as response:
                text = await _read_text(response, max_bytes)
                if response.status < 400:
                    return {"status": response.status, "body": text[:2000], "attempts": attempt + 1}
                last_error = f"HTTP {response.status}: {text[:200]}"
                if response.status != 429 and response.status < 500:
                    break
        except aiohttp.ClientConnectorError as err:
            if isinstance(err.os_error, BlockedDestination):
                raise err.os_error from None
            last_error = f"{type(err).__name__}: {err}"
        except (aiohttp.ClientError, TimeoutError) as err:
            last_error = f"{type(err).__name__}: {err}"
        log.warning("webhook_attempt_failed", url=url, attempt=attempt + 1, error=last_error)
    raise WebhookError(last_error)


async def _read_text(response: aiohttp.ClientResponse, max_bytes: int) -> str:
    """At most ``max_bytes`` of the body, decoded leniently (a webhook may answer anything)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    data = b"".join(chunks)[:max_bytes]
    try:
        return data.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")
