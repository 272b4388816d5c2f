"""Console sessions: the cookie a token becomes when someone signs in to the console.

The cookie is ``v1.<payload>.<signature>``: the payload (base64url JSON) holds a random
session id, the expiry and the token sealed with AES-GCM (so a copied cookie never shows the
token itself); the signature is HMAC-SHA256 over the payload. Both keys are derived from one
master key: the one handed to ``Authenticator`` or, by default, one derived from the admin
token (so every replica sharing it accepts the same cookies, and changing the admin token
signs everyone out), or, with no admin token, a random key made per process (sessions then
end when the process restarts).

A session authenticates as its token would: the token is resolved again on every request,
so revoking a principal ends its console sessions too. The CSRF token of a session is an
HMAC of its id, the same on every form of the session and useless in any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from incidents.store import keys
from incidents.store.redis import guarded

SESSION_COOKIE = "incidents_session"
SIGN_IN_COOKIE = "incidents_sign_in"  # the CSRF nonce of the sign-in form, before a session
CONSOLE_PREFIX = "/console"
SESSION_SECONDS = 8 * 3600
_VERSION = "v1"


def master_key(admin_token: str | None) -> bytes:
    """The default master key: derived from the admin token, else random for this process."""
    if admin_token:
        return hmac.new(admin_token.encode(), b"incidents console sessions", "sha256").digest()
    return os.urandom(32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    id: str
    token: str
    expires: float


class SessionCodec:
    """Makes and opens session cookies and the CSRF tokens that go with them."""

    def __init__(self, master: bytes, clock: Callable[[], float]) -> None:
        self._sign = hmac.new(master, b"sign", "sha256").digest()
        self._seal = AESGCM(hmac.new(master, b"seal", "sha256").digest())
        self._csrf = hmac.new(master, b"csrf", "sha256").digest()
        self.clock = clock

    def make(self, token: str, seconds: int = SESSION_SECONDS) -> tuple[str, Session]:
        """A new session for ``token``: the cookie value and the session it opens to."""
        session = Session(_b64(os.urandom(18)), token, self.clock() + seconds)
        nonce = os.urandom(12)
        sealed = nonce + self._seal.encrypt(nonce, token.encode(), session.id.encode())
        payload = _b64(orjson.dumps({"s": session.id, "e": session.expires, "t": _b64(sealed)}))
        return f"{_VERSION}.{payload}.{self._signature(payload)}", session

    def open(self, cookie: str) -> Session | None:
        """The session a cookie holds, or None when it is forged, altered or expired."""
        version, _, rest = cookie.partition(".")
        payload, _, signature = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(signature, self._signature(payload)):
            return None
        try:
            fields = orjson.loads(_unb64(payload))
            session_id, expires = str(fields["s"]), float(fields["e"])
            sealed = _unb64(str(fields["t"]))
            token = self._seal.decrypt(sealed[:12], sealed[12:], session_id.encode()).decode()
        except (binascii.Error, ValueError, TypeError, KeyError, InvalidTag):
            return None
        if expires <= self.clock():
            return None
        return Session(session_id, token, expires)

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token of a session (or of a sign-in form's nonce)."""
        return _b64(hmac.new(self._csrf, session_id.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session_id: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token(session_id).encode()
        )

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._sign, payload.encode(), hashlib.sha256).digest())


class EndedSessions:
    """Console sessions signed out before their cookie expires: a copied cookie is refused
    from sign-out on, not only when it expires (kept in Redis until then)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def end(self, session: Session) -> None:
        async with guarded("signing out"):
            await self.redis.set(
                keys.ended_session(session.id), b"1", pxat=int(session.expires * 1000) + 1000
            )

    async def ended(self, session_id: str) -> bool:
        async with guarded("checking a console session"):
            return bool(await self.redis.exists(keys.ended_session(session_id)))
