"""Dashboard login sessions and CSRF tokens.

Logging in exchanges an admin API token for a session: a random id in an HttpOnly,
SameSite=Strict cookie (Secure when the public URL is https), stored as a SHA-256 in
``dashboard_sessions``. Each session has its own CSRF token, which every POST form
carries in a hidden field (the synchronizer-token pattern); the login form, which has
no session yet, uses a double-submit cookie instead.

A session stores the hash of the token that opened it and is valid only while that
token is: a revoked database token or a rotated bootstrap ``REPLYLINE_API_TOKEN`` ends
every session it opened, on every replica, at the next request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from libs.db import Queries
from services.ingest.auth import hash_token, secrets_equal

SESSION_COOKIE = "rl_session"
LOGIN_CSRF_COOKIE = "rl_login_csrf"
COOKIE_PATH = "/dashboard"


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    csrf_token: str

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and secrets_equal(str(submitted), self.csrf_token)


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, ttl_s: float, bootstrap_token: str) -> None:
        self._pool = pool
        self._q = queries
        self.ttl_s = ttl_s
        # A session opened with the settings token lives only while that exact token is
        # configured: removing or rotating REPLYLINE_API_TOKEN ends it.
        self._bootstrap_hash = hash_token(bootstrap_token) if bootstrap_token else None

    async def create(self, principal: str, credential: str) -> str:
        """Open a session for the holder of ``credential`` (the admin token just checked)
        and return its id (the cookie value; not stored as such)."""
        session_id = secrets.token_urlsafe(32)
        await self._pool.execute(
            self._q.create_session,
            hash_token(session_id),
            principal,
            secrets.token_urlsafe(32),
            self.ttl_s,
            hash_token(credential),
        )
        return session_id

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        row = await self._pool.fetchrow(self._q.get_session, hash_token(session_id), self._bootstrap_hash)
        if row is None:
            return None
        return Session(principal=row["principal"], csrf_token=row["csrf_token"])

    async def revoke(self, session_id: str) -> None:
        await self._pool.execute(self._q.revoke_session, hash_token(session_id))

    async def purge_expired(self) -> None:
        await self._pool.execute(self._q.purge_sessions)
