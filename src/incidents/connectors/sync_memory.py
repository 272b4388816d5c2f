"""What two-way sync remembers per subscription, beside the channel state:

- ``incidents:sync:<sub>:seen``: incident id -> JSON of the values the system last sent us
  (so a record sent again, or an echo after the system said otherwise, is told apart);
- ``incidents:sync:<sub>:records``: the system's record id -> incident id (a PagerDuty note
  names only the PagerDuty incident).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import redis.asyncio as aioredis

from incidents.connectors.channel_base import ChannelState
from incidents.store import keys
from incidents.store.redis import guarded

SCAN_LIMIT = 10_000  # channel states read at most when looking a record up by its id


class SyncMemory:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout  # whose partitions hold the channel state

    async def seen(self, sub_id: str, incident: str) -> dict[str, str]:
        async with guarded("reading sync state"):
            raw = await self.redis.hget(keys.sync_seen(sub_id), incident)
        found = orjson.loads(raw) if raw else {}
        return {str(k): str(v) for k, v in found.items()}

    async def remember(
        self, sub_id: str, incident: str, record: str, seen: Mapping[str, str]
    ) -> None:
        async with guarded("writing sync state"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(keys.sync_seen(sub_id), incident, orjson.dumps(dict(seen)))
            if record:
                pipe.hset(keys.sync_records(sub_id), record, incident)
            await pipe.execute()

    async def incident_of(self, sub_id: str, record: str) -> str | None:
        """The incident whose record (in this subscription's system) is ``record``: as
        remembered, else the channel state holding it as its external id."""
        async with guarded("looking a record up"):
            known = await self.redis.hget(keys.sync_records(sub_id), record)
            if known:
                return _text(known)
            read = 0
            for space in self.layout:  # channel state is kept in the incident's partition
                async for incident, raw in self.redis.hscan_iter(space.channel_state(sub_id)):
                    read += 1
                    if ChannelState.decode(raw).external_id == record:
                        return _text(incident)
                    if read >= SCAN_LIMIT:
                        return None
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
