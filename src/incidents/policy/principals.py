"""API principals, kept in Redis so that every API replica and worker sees the same set.

Storage (a contract the delivery workers read too):

    incidents:principal:<id>      hash  name, roles (comma-separated), tenant, clearance,
                                        restricted ("1"/"0"), publish (comma-separated),
                                        token (sha256 hex of the token), created_at
    incidents:token:<sha256 hex>  string -> principal id
    incidents:principals          set of principal ids
    incidents:principal-names     hash  name -> principal id (names are unique)

A token is shown once, when its principal is created; only its SHA-256 is stored. Lookups
read Redis on every request (no cache), so deleting a principal revokes its token at once on
every replica.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import redis
import redis.asyncio as aioredis

from incidents.model.principal import Principal, admin_principal, token_hash
from incidents.store import keys
from incidents.store.redis import guarded, guarded_sync
from incidents.store.scripts import load_script

TOKEN_PREFIX_TEXT = "imt_"  # noqa: S105  # a marker that makes tokens recognizable, not a secret


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _split(value: str) -> tuple[str, ...]:
    return tuple(p for p in value.split(",") if p)


def principal_from_hash(principal_id: str, fields: Mapping[bytes | str, object]) -> Principal:
    """A Principal from its Redis hash (bytes or str keys and values)."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    return Principal(
        id=principal_id,
        name=f.get("name", principal_id),
        roles=frozenset(_split(f.get("roles", ""))),
        tenant=f.get("tenant") or "default",
        clearance=f.get("clearance") or "public",
        restricted=f.get("restricted") == "1",
        publish=_split(f.get("publish", "")),
    )


def principal_to_dict(principal: Principal) -> dict[str, object]:
    return {
        "id": principal.id,
        "name": principal.name,
        "roles": sorted(principal.roles),
        "tenant": principal.tenant,
        "clearance": principal.clearance,
        "restricted": principal.restricted,
        "publish": list(principal.publish),
    }


def load_principal(client: redis.Redis, principal_id: str) -> Principal | None:
    """For workers (sync Redis): the principal with this id, the admin included, or None
    once it has been revoked."""
    if principal_id == admin_principal().id:
        return admin_principal()
    with guarded_sync("reading a principal"):
        fields = client.hgetall(keys.principal_key(principal_id))
    return principal_from_hash(principal_id, fields) if fields else None


def new_token() -> str:
    return TOKEN_PREFIX_TEXT + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Created:
    principal: Principal
    token: str
    created_at: str


class NameTaken(Exception):
    def __init__(self, name: str, existing_id: str) -> None:
        super().__init__(f"a principal named {name!r} exists ({existing_id})")
        self.name, self.existing_id = name, existing_id


class PrincipalStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._create = redis.register_script(load_script("principal_create"))
        self._revoke = redis.register_script(load_script("principal_revoke"))

    async def create(self, template: Principal, now: datetime) -> Created:
        """Store a new principal (its id is assigned here) with a fresh token."""
        principal_id = "prn_" + secrets.token_hex(8)
        token = new_token()
        digest = token_hash(token)
        principal = dataclasses.replace(template, id=principal_id)
        created_at = now.isoformat()
        fields = {
            "name": principal.name,
            "roles": ",".join(sorted(principal.roles)),
            "tenant": principal.tenant,
            "clearance": principal.clearance,
            "restricted": "1" if principal.restricted else "0",
            "publish": ",".join(principal.publish),
            "token": digest,
            "created_at": created_at,
        }
        flat = [x for kv in fields.items() for x in kv]
        async with guarded("creating a principal"):
            taken = await self._create(
                keys=[
                    keys.PRINCIPAL_NAMES,
                    keys.principal_key(principal_id),
                    keys.token_key(digest),
                    keys.PRINCIPALS,
                ],
                args=[principal.name, principal_id, *flat],
            )
        if taken is not None:
            raise NameTaken(principal.name, _text(taken))
        return Created(principal, token, created_at)

    async def get(self, principal_id: str) -> tuple[Principal, str] | None:
        """The principal and its creation time, or None."""
        async with guarded("reading a principal"):
            fields = await self.redis.hgetall(keys.principal_key(principal_id))
        if not fields:
            return None
        created = _text(fields.get(b"created_at", b""))
        return principal_from_hash(principal_id, fields), created

    async def list(self) -> list[tuple[Principal, str]]:
        async with guarded("listing principals"):
            ids = sorted(_text(i) for i in await self.redis.smembers(keys.PRINCIPALS))
            pipe = self.redis.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(keys.principal_key(i))
            rows = await pipe.execute()
        return [
            (principal_from_hash(i, f), _text(f.get(b"created_at", b"")))
            for i, f in zip(ids, rows, strict=True)
            if f
        ]

    async def revoke(self, principal_id: str) -> bool:
        """Delete the principal and its token; False if there was none."""
        async with guarded("revoking a principal"):
            done = await self._revoke(
                keys=[keys.principal_key(principal_id), keys.PRINCIPAL_NAMES, keys.PRINCIPALS],
                args=[keys.TOKEN_PREFIX, principal_id],
            )
        return bool(done)

    async def lookup(self, token: str) -> Principal | None:
        """The principal a bearer token belongs to, or None (unknown or revoked)."""
        digest = token_hash(token)
        async with guarded("checking a token"):
            principal_id = await self.redis.get(keys.token_key(digest))
            if principal_id is None:
                return None
            fields = await self.redis.hgetall(keys.principal_key(_text(principal_id)))
        stored = _text(fields.get(b"token", b""))
        # The index is keyed by the digest already; comparing the stored digest in constant
        # time as well means a stale index entry can never authenticate.
        if not fields or not hmac.compare_digest(stored.encode(), digest.encode()):
            return None
        return principal_from_hash(_text(principal_id), fields)
