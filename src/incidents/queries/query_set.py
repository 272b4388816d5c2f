"""``Queries``: every read query, built once when the app starts, and the viewer factory."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.queries.alerts import AlertQueries
from incidents.queries.event_queries import EventQueries
from incidents.queries.incidents import IncidentQueries
from incidents.queries.timelines import TimelineQueries
from incidents.queries.visibility import Viewer
from incidents.store.events import EventStore


@dataclass(frozen=True)
class Queries:
    """Every query, built once when the app starts."""

    registry: SchemaRegistry
    incidents: IncidentQueries
    timelines: TimelineQueries
    alerts: AlertQueries
    events: EventQueries

    @classmethod
    def build(cls, redis: aioredis.Redis, store: EventStore, registry: SchemaRegistry) -> Queries:
        incidents = IncidentQueries(redis, store.layout)
        return cls(
            registry=registry,
            incidents=incidents,
            timelines=TimelineQueries(incidents, store),
            alerts=AlertQueries(redis, store.layout),
            events=EventQueries(store),
        )

    def viewer(self, principal: Principal) -> Viewer:
        return Viewer(principal, self.registry)
