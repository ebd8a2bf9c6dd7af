"""Bearer tokens for the owner API and the lead webhook.

Tokens are 256-bit random strings shown once at creation; the database keeps only
their SHA-256, so a leaked table does not leak usable tokens. Two scopes: ``admin``
(owner API and leads) and ``leads`` (only POST /leads, safe to paste into a form tool).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal, Protocol

import asyncpg

from libs.db import Queries

Scope = Literal["admin", "leads"]
SCOPES: tuple[Scope, ...] = ("admin", "leads")
TOKEN_PREFIX = "rl_"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scope: Scope

    def allows(self, needed: Scope) -> bool:
        return self.scope == "admin" or self.scope == needed


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal | None: ...


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def secret_bytes(value: str) -> bytes:
    """A caller-supplied secret as bytes, whatever it holds.

    ``hmac.compare_digest`` raises TypeError on a ``str`` with non-ASCII characters, and
    aiohttp decodes undecodable header bytes to lone surrogates, which strict UTF-8
    encoding refuses: either used to crash the check (a 503 with Retry-After, so clients
    retried forever). ``surrogatepass`` encodes every ``str``; such a value simply never
    equals a real token.
    """
    return value.encode("utf-8", "surrogatepass")


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets (any characters; never raises)."""
    return hmac.compare_digest(secret_bytes(a), secret_bytes(b))


def hash_token(token: str) -> str:
    return hashlib.sha256(secret_bytes(token)).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


class DbTokenVerifier:
    """Checks tokens against api_tokens, plus an optional bootstrap admin token from settings."""

    def __init__(self, pool: asyncpg.Pool, queries: Queries, bootstrap_token: str = "") -> None:
        self._pool = pool
        self._q = queries
        self._bootstrap = bootstrap_token

    async def verify(self, token: str) -> Principal | None:
        if self._bootstrap and secrets_equal(token, self._bootstrap):
            return Principal(name="settings", scope="admin")
        row = await self._pool.fetchrow(self._q.verify_token, hash_token(token))
        if row is None:
            return None
        return Principal(name=row["name"], scope=row["scope"])


async def create_token(
    conn: asyncpg.Connection | asyncpg.Pool, queries: Queries, name: str, scope: Scope
) -> str:
    """Store a new token's hash and return the token itself (the only time it is visible)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token = new_token()
    await conn.execute(queries.create_token, name, hash_token(token), scope)
    return token
