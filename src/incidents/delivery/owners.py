"""Who owns a subscription, resolved when a delivery is made (principals can be revoked)."""

from __future__ import annotations

import redis.asyncio as aioredis

from incidents.auth import Principal, admin_principal
from incidents.policy.principals import principal_from_hash, principal_key

RULE_OWNER_REVOKED = "owner-revoked"


async def load_owner(redis: aioredis.Redis, principal_id: str) -> Principal | None:
    """The owner's principal as it is now, or None once it has been revoked."""
    if principal_id == admin_principal().id:
        return admin_principal()
    fields = await redis.hgetall(principal_key(principal_id))
    if not fields:
        return None
    try:
        return principal_from_hash(principal_id, fields)
    except ValueError:  # a hash that no longer describes a valid principal
        return None
