"""Channel state: what a channel keeps per (subscription, incident) between deliveries, such
as the id of the record it created in the other system.

Stored in one hash per subscription in each partition (``incidents:sub:<id>:channels``,
incident id -> JSON, for the incidents of that partition), read here, written by
``DeliveryStore.complete`` in the same step as the lane's progress (so state and delivered
events never disagree), and deleted with the subscription.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis

from incidents.connectors.channel_base import ChannelState
from incidents.store import keys
from incidents.store.redis import guarded


class ChannelStateStore:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout

    async def get_many(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ChannelState]:
        """The state kept for each (subscription id, incident id) that has any."""
        wanted = list(dict.fromkeys(p for p in pairs if p[1]))
        if not wanted:
            return {}
        async with guarded("reading channel state"):
            pipe = self.redis.pipeline(transaction=False)
            for sub_id, incident in wanted:
                pipe.hget(self.layout.of_incident(incident).channel_state(sub_id), incident)
            rows = await pipe.execute()
        return {p: ChannelState.decode(r) for p, r in zip(wanted, rows, strict=True) if r}

    async def get(self, sub_id: str, incident: str) -> ChannelState | None:
        return (await self.get_many([(sub_id, incident)])).get((sub_id, incident))
