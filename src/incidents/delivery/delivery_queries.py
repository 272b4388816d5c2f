"""The delivery package's read queries, on the read layer's ``Viewer``: a subscription's
recent attempts (its owner's, or an admin's, to read) and the dead letters (admins). Both are
bounded in Redis (the attempt log is capped, dead letters are read newest first up to
``limit``), so neither needs a cursor; with several partitions each partition's are read up
to ``limit`` and merged, newest first."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from incidents.delivery.lanes import DeliveryStore
from incidents.errors import NotFound
from incidents.queries.visibility import Viewer
from incidents.store import keys
from incidents.subscriptions.subscription import Subscription, SubscriptionStore


@dataclass(frozen=True)
class DeliveryLog:
    subscription: Subscription
    attempts: list[dict[str, object]]


class DeliveryQueries:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.lanes = DeliveryStore(redis, layout)
        self.subscriptions = SubscriptionStore(redis, layout)

    async def subscription(self, viewer: Viewer, sub_id: str) -> Subscription:
        """The subscription, if the caller owns it (admins own all); otherwise NotFound."""
        sub = await self.subscriptions.get(sub_id)
        if sub is None or not viewer.owns(sub.owner):
            raise NotFound(f"no subscription {sub_id!r}")
        return sub

    async def log(self, viewer: Viewer, sub_id: str, limit: int) -> DeliveryLog:
        """The latest ``limit`` attempts of a subscription the caller owns, newest first."""
        sub = await self.subscription(viewer, sub_id)
        return DeliveryLog(sub, list(await self.lanes.attempts(sub.id, limit)))

    async def dead_letters(self, limit: int) -> list[dict[str, object]]:
        """The latest ``limit`` dead letters, newest first (an admin's read: all owners)."""
        return [dict(d.to_dict()) for d in await self.lanes.dead_letters(limit)]
