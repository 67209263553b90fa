"""Dashboard login: the operator token, exchanged once for a session cookie.

The cookie (``gw_session``) is HttpOnly, SameSite=Strict, with an expiry; it holds a random
session id, never the token. Each session has its own CSRF token, which every state-changing
POST must carry in the ``X-CSRF-Token`` header (the page reads it from ``/dashboard/api/session``).
Sessions live in memory: a restart logs everyone out, which is the safe direction.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "gw_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 64
# Failed logins per window from anywhere: the token is long and random, this only keeps the
# log quiet and brute force pointless.
MAX_FAILURES = 20
FAILURE_WINDOW_S = 60.0


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires: float


class Sessions:
    def __init__(self, token: bytes, *, ttl_s: float = SESSION_TTL_S, clock=time.monotonic):
        self._token = token
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: list[float] = []

    def login(self, presented: str) -> Session | None:
        now = self._clock()
        self._failures = [t for t in self._failures if now - t < FAILURE_WINDOW_S]
        if len(self._failures) >= MAX_FAILURES:
            return None
        if not presented or not hmac.compare_digest(presented.strip().encode(), self._token):
            self._failures.append(now)
            return None
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:  # the oldest goes
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.id]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.ttl_s)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), session.csrf.encode())

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
