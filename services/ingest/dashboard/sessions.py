"""Dashboard login sessions and CSRF tokens.

Logging in exchanges an admin API token for a session: a random id in an HttpOnly,
SameSite=Strict cookie (Secure when the public URL is https), stored as a SHA-256 in
``dashboard_sessions``. Each session has its own CSRF token, which every POST form
carries in a hidden field (the synchronizer-token pattern); the login form, which has
no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import asyncpg

from libs.db import Queries
from services.ingest.auth import hash_token

SESSION_COOKIE = "rl_session"
LOGIN_CSRF_COOKIE = "rl_login_csrf"
COOKIE_PATH = "/dashboard"


@dataclass(frozen=True, slots=True)
class Session:
    principal: str
    csrf_token: str

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(str(submitted), self.csrf_token)


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, ttl_s: float, bootstrap_enabled: bool) -> None:
        self._pool = pool
        self._q = queries
        self.ttl_s = ttl_s
        # A session opened with the settings token dies when that token is removed.
        self._bootstrap_enabled = bootstrap_enabled

    async def create(self, principal: str) -> str:
        """Open a session and return its id (the cookie value; not stored as such)."""
        session_id = secrets.token_urlsafe(32)
        await self._pool.execute(
            self._q.create_session, hash_token(session_id), principal, secrets.token_urlsafe(32), self.ttl_s
        )
        return session_id

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        row = await self._pool.fetchrow(self._q.get_session, hash_token(session_id))
        if row is None or (row["principal"] == "settings" and not self._bootstrap_enabled):
            return None
        return Session(principal=row["principal"], csrf_token=row["csrf_token"])

    async def revoke(self, session_id: str) -> None:
        await self._pool.execute(self._q.revoke_session, hash_token(session_id))

    async def purge_expired(self) -> None:
        await self._pool.execute(self._q.purge_sessions)
