"""Who is calling: bearer tokens resolved to principals, once per request.

The admin token comes from settings; every other principal is kept in Redis by
``incidents.policy.principals``, whose ``PrincipalStore.lookup`` the app hands to the
``Authenticator`` when it starts.

Starlette's ``AuthenticationMiddleware`` runs ``BearerTokens`` for every request, so
``request.user`` is the ``Principal`` (or ``Anonymous``, holding why not). An endpoint that
needs a caller asks ``caller(request)``, which raises that reason (a 401 problem with
``WWW-Authenticate``, or a 503 when Redis could not be asked); endpoints that do not ask
(health, metrics, the OpenAPI document, PagerDuty's ``/v2/enqueue`` with its routing key)
behave as if there were no middleware.

Without an ``Authorization`` header, the console's session cookie (``session_cookies``)
stands for the token it was made from: it authenticates reads anywhere (the console's pages and
its live stream) and any method under ``/console``, whose forms carry a CSRF token; other
writes still need the bearer header, which always wins when both are sent.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.requests import HTTPConnection

from incidents.api.toolkit.session_cookies import (
    CONSOLE_PREFIX,
    SESSION_COOKIE,
    Session,
    SessionCodec,
    master_key,
)
from incidents.errors import IncidentsError, Unauthorized
from incidents.model.principal import Principal, admin_principal

TokenLookup = Callable[[str], Awaitable[Principal | None]]


def bearer_token(conn: HTTPConnection) -> str:
    """The token of ``Authorization: Bearer <token>``; Unauthorized when there is none."""
    header = conn.headers.get("authorization")
    if not header:
        raise Unauthorized("send Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token


SAFE_METHODS = frozenset({"GET", "HEAD"})


class SessionEnds(Protocol):
    """Where signed-out console sessions are remembered until their cookies expire."""

    async def end(self, session: Session) -> None: ...

    async def ended(self, session_id: str) -> bool: ...


class Authenticator:
    """Resolves ``Authorization: Bearer <token>``: the admin token, else stored principals;
    and the console's session cookies (``sessions``), made and opened with ``session_key``
    (by default one derived from the admin token)."""

    def __init__(
        self,
        admin_token: str | None,
        lookup: TokenLookup | None = None,
        session_key: bytes | None = None,
        clock: Callable[[], float] = time.time,
        ended: SessionEnds | None = None,
    ) -> None:
        self._admin = admin_token.encode("utf-8") if admin_token else None
        self._admin_principal = admin_principal()  # built once: it is on every admin request
        self._lookup = lookup
        self.sessions = SessionCodec(session_key or master_key(admin_token), clock)
        self._ended = ended

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        return await self.resolve(bearer_token(conn))

    async def resolve(self, token: str) -> Principal:
        if self._admin is not None and hmac.compare_digest(token.encode("utf-8"), self._admin):
            return self._admin_principal
        if self._lookup is not None:
            principal = await self._lookup(token)
            if principal is not None:
                return principal
        raise Unauthorized("the token is not valid (unknown, revoked or mistyped)")

    async def resolve_session(self, conn: HTTPConnection, cookie: str) -> Principal:
        """The principal of a console session cookie, for what a cookie may do."""
        path, method = conn.scope.get("path", ""), conn.scope.get("method", "GET")
        in_console = path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        if method not in SAFE_METHODS and not in_console:
            raise Unauthorized(
                "a console session signs in the console and reads only; "
                "send Authorization: Bearer <token>"
            )
        session = self.sessions.open(cookie)
        if session is None:
            raise Unauthorized("the console session has expired or is not valid; sign in again")
        if self._ended is not None and await self._ended.ended(session.id):
            raise Unauthorized("the console session was signed out; sign in again")
        return await self.resolve(session.token)

    async def end_session(self, cookie: str) -> None:
        """Sign a console session out for good: its cookie, even copied, opens nothing more."""
        session = self.sessions.open(cookie)
        if session is not None and self._ended is not None:
            await self._ended.end(session)


class Anonymous(UnauthenticatedUser):
    """``request.user`` when the request carries no valid token: ``refusal`` says why."""

    def __init__(self, refusal: IncidentsError) -> None:
        self.refusal = refusal


class BearerTokens(AuthenticationBackend):
    """The backend of Starlette's ``AuthenticationMiddleware``. It never refuses a request
    itself, so public endpoints and unknown paths answer as they would without it; the
    refusal waits in ``Anonymous`` until an endpoint asks for its ``caller``."""

    def __init__(self, authenticator: Callable[[HTTPConnection], Authenticator]) -> None:
        self._authenticator = authenticator

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        try:
            cookie = conn.cookies.get(SESSION_COOKIE)
            if cookie and "authorization" not in conn.headers:
                principal = await self._authenticator(conn).resolve_session(conn, cookie)
            else:
                token = bearer_token(conn)  # checked first: no header, no look-up at all
                principal = await self._authenticator(conn).resolve(token)
        except IncidentsError as exc:  # Unauthorized, or StoreUnavailable from the lookup
            return AuthCredentials(), Anonymous(exc)
        # A Principal has what Starlette reads of a user (``is_authenticated``,
        # ``display_name``, ``identity``) without the model depending on Starlette.
        return AuthCredentials(["authenticated", *sorted(principal.roles)]), cast(
            BaseUser, principal
        )


def caller(conn: HTTPConnection) -> Principal:
    """The authenticated principal of this request; raises why there is none (401, 503)."""
    user = conn.scope.get("user")
    if isinstance(user, Principal):
        return user
    if isinstance(user, Anonymous):
        raise user.refusal
    raise Unauthorized("send Authorization: Bearer <token>")
