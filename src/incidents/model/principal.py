"""The caller the gateway judges by: a principal's roles, tenant, clearance and publish rights."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass

from incidents.errors import Forbidden
from incidents.model.labels import DATA_CLASS_NAMES

ADMIN, PRODUCER, SUBSCRIBER = "admin", "producer", "subscriber"
ROLES = (ADMIN, PRODUCER, SUBSCRIBER)  # admins hold every role
CLEARANCES = DATA_CLASS_NAMES  # a clearance is the highest data class a principal may see
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a principal of the gateway (``policy/principals``) or the admin token.
    It is what the domains judge by; it is also what Starlette's authentication middleware
    puts in ``request.user`` (hence ``is_authenticated``, ``display_name``, ``identity``)."""

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
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def identity(self) -> str:
        return self.id

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def may_publish(self, event_type: str) -> bool:
        if self.is_admin:
            return True
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.publish)

    def has(self, role: str) -> bool:
        """Whether the principal holds ``role`` (an admin holds every role)."""
        return role in self.roles or self.is_admin

    def require(self, role: str) -> None:
        if not self.has(role):
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
