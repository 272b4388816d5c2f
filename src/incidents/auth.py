"""Who is calling: bearer tokens resolved to principals.

The admin token comes from settings; every other principal is kept in Redis by
``incidents.policy.principals``, whose ``PrincipalStore.lookup`` the app hands to the
``Authenticator`` when it starts.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from incidents.errors import Forbidden, Unauthorized
from incidents.model.labels import DATA_CLASS_NAMES

ROLES = ("admin", "producer", "subscriber")
CLEARANCES = DATA_CLASS_NAMES  # a clearance is the highest data class a principal may see
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    roles: frozenset[str]
    tenant: str = DEFAULT_TENANT
    clearance: str = "internal"
    restricted: bool = False
    publish: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = sorted(set(self.roles) - set(ROLES))
        if bad:
            raise ValueError(f"unknown role(s) {bad!r}; roles are {', '.join(ROLES)}")
        if self.clearance not in CLEARANCES:
            raise ValueError(f"clearance {self.clearance!r} is not one of {', '.join(CLEARANCES)}")
        if not self.tenant:
            raise ValueError("a principal needs a tenant")

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def may_publish(self, event_type: str) -> bool:
        if self.is_admin:
            return True
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.publish)

    def require(self, role: str) -> None:
        if role not in self.roles and not self.is_admin:
            raise Forbidden(f"principal {self.name!r} lacks the {role!r} role")


def admin_principal() -> Principal:
    return Principal(
        id="admin",
        name="admin",
        roles=frozenset(ROLES),
        tenant=DEFAULT_TENANT,
        clearance="restricted",
        restricted=True,
        publish=("*",),
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


TokenLookup = Callable[[str], Awaitable[Principal | None]]


class Authenticator:
    """Resolves ``Authorization: Bearer <token>``: the admin token, else stored principals."""

    def __init__(self, admin_token: str | None, lookup: TokenLookup | None = None) -> None:
        self._admin = admin_token.encode("utf-8") if admin_token else None
        self._admin_principal = admin_principal()  # built once: it is on every admin request
        self._lookup = lookup

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise Unauthorized("send Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return await self.resolve(token)

    async def resolve(self, token: str) -> Principal:
        if self._admin is not None and hmac.compare_digest(token.encode("utf-8"), self._admin):
            return self._admin_principal
        if self._lookup is not None:
            principal = await self._lookup(token)
            if principal is not None:
                return principal
        raise Unauthorized("the token is not valid (unknown, revoked or mistyped)")
