"""Versioned documents (incidents, alerts) read and written during one planning pass.

The store writes each document only if its version is still the one read here; reads are
cached for the pass so that several events of one batch chain their versions in order.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from incidents.ingest.planning import Pending
from incidents.store.events import VersionedWrite
from incidents.store.redis import guarded


class DocumentCache:
    """Documents as this process last committed or read them, with their versions.

    It only ever holds pairs that were true in Redis at some point, so a stale entry has an
    older version than Redis: the store then refuses the write, the ingestor forgets the cache
    and plans again from a fresh read. One API replica therefore reads an incident from Redis
    once, not on every event; several replicas stay correct and pay a retry when they race.
    """

    def __init__(self, size: int = 5000) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[int, bytes | None]] = OrderedDict()

    def get(self, key: str) -> tuple[int, bytes | None] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: str, version: int, raw: bytes | None) -> None:
        self._entries[key] = (version, raw)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class Documents:
    def __init__(self, redis: aioredis.Redis, shared: DocumentCache) -> None:
        self.redis = redis
        self.shared = shared
        # key -> (version, document (decoded when first read), its JSON)
        self._cache: dict[str, tuple[int, dict[str, Any] | None, bytes | None]] = {}

    def mark(self) -> dict[str, tuple[int, dict[str, Any] | None, bytes | None]]:
        """What this pass knows now, for ``undo`` (planning a request that may be refused)."""
        return dict(self._cache)

    def undo(self, mark: dict[str, tuple[int, dict[str, Any] | None, bytes | None]]) -> None:
        """Forget the writes planned since ``mark``: the next event is planned without them."""
        self._cache = mark

    async def _load(self, key: str) -> tuple[int, dict[str, Any] | None, bytes | None]:
        found = self._cache.get(key)
        if found is None:
            known = self.shared.get(key)
            if known is None:
                async with guarded("reading a document"):
                    v, j = await self.redis.hmget(key, ["v", "j"])
                known = (int(v) if v else 0, cast(bytes, j) if j else None)
                self.shared.put(key, *known)
            found = self._cache[key] = (known[0], None, known[1])  # decoded when read
        return found

    async def read(self, key: str) -> dict[str, Any] | None:
        version, document, encoded = await self._load(key)
        if document is None and encoded is not None:
            document = orjson.loads(encoded)
            self._cache[key] = (version, document, encoded)
        return document

    async def encoded(self, key: str) -> bytes | None:
        """The JSON of the document at ``key`` as read, or as last written in this pass."""
        return (await self._load(key))[2]

    def write(self, pending: Pending, key: str, document: dict[str, Any]) -> VersionedWrite:
        """Plan ``document`` for ``key`` with the event; ``read`` must have been called."""
        version = self._cache[key][0]
        write = VersionedWrite(key, version, document)
        pending.writes.append(write)
        # Encoded now (the store needs the JSON anyway), so that the next event of the pass
        # finds the incident parsed from it instead of building it again from the dict.
        self._cache[key] = (version + 1, document, write.encoded)
        return write
