"""Materialized incidents: one by id, or a page of those a caller may see, newest first.

Listing walks ``incidents:incident-index`` (scored by declaration time) with a cursor
(``store.index_pages``; with several partitions, each partition's index, merged newest first,
behind a composite cursor); the status, severity and service filters are applied while walking,
within the per-request scan bound, rather than kept as index sets per value: status and
severity change with every lifecycle event, so value indexes would have to be moved
atomically with each incident write, and the caller's visibility must be checked on every
document anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from incidents.errors import NotFound
from incidents.model.incident import Incident
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.queries.visibility import Viewer
from incidents.store import keys
from incidents.store.documents import read_many
from incidents.store.index_pages import Page, PageRequest, walk_partitions
from incidents.store.redis import guarded


@dataclass(frozen=True)
class IncidentFilter:
    status: IncidentStatus | None = None
    severity: Severity | None = None
    service: str | None = None

    def matches(self, incident: Incident) -> bool:
        return (
            (self.status is None or incident.status is self.status)
            and (self.severity is None or incident.severity is self.severity)
            and (self.service is None or incident.service == self.service)
        )


class IncidentQueries:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout

    async def find(self, viewer: Viewer, incident_id: str) -> Incident:
        """The incident, if the caller may see it; otherwise NotFound (as if absent)."""
        async with guarded("reading an incident"):
            raw = await self.redis.hget(self._space(incident_id).incident(incident_id), "j")
        incident = Incident.from_dict(orjson.loads(raw)) if raw else None
        if incident is None or not viewer.sees_incident(incident):
            raise NotFound(f"no incident {incident_id!r}")
        return incident

    async def get(self, viewer: Viewer, incident_id: str) -> dict[str, object]:
        """The incident document as the caller may see it (fields above its clearance out)."""
        incident = await self.find(viewer, incident_id)
        (refs,) = await self._refs([incident_id])
        return viewer.incident_document(with_refs(incident.to_dict(), refs))

    async def page(
        self, viewer: Viewer, where: IncidentFilter, asked: PageRequest
    ) -> Page[dict[str, object]]:
        """Incidents matching ``where`` that the caller may see, newest declared first."""

        def keep(incident: Incident) -> bool:
            return where.matches(incident) and viewer.sees_incident(incident)

        indexes = [space.INCIDENT_INDEX for space in self.layout]
        page = await walk_partitions(self.redis, indexes, asked, self._load, keep)
        refs = await self._refs([i.id for i in page.items])
        shown = [
            viewer.incident_document(with_refs(i.to_dict(), r))
            for i, r in zip(page.items, refs, strict=True)
        ]
        return Page(shown, page.next_cursor)

    async def _refs(self, ids: Sequence[str]) -> list[dict[str, str]]:
        """Per incident, its records in other systems kept by delivery channels."""
        if not ids:
            return []
        async with guarded("reading external references"):
            pipe = self.redis.pipeline(transaction=False)
            for incident_id in ids:
                pipe.hgetall(self._space(incident_id).incident_refs(incident_id))
            rows = await pipe.execute()
        return [{k.decode(): v.decode() for k, v in row.items()} for row in rows]

    async def _load(self, ids: Sequence[str]) -> list[Incident | None]:
        docs = await read_many(self.redis, [self._space(i).incident(i) for i in ids])
        return [None if d is None else Incident.from_dict(d) for d in docs]

    def _space(self, incident_id: str) -> keys.Keyspace:
        return self.layout.of_incident(incident_id)


def with_refs(document: dict[str, object], refs: Mapping[str, str]) -> dict[str, object]:
    """The incident document with the records delivery channels keep for it added to its
    ``external_refs`` (``<channel>:<subscription>`` -> the record's id in that system)."""
    if not refs:
        return document
    found = document.get("external_refs")
    merged = dict(found) if isinstance(found, Mapping) else {}
    merged.update(refs)
    return {**document, "external_refs": merged}
