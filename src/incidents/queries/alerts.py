"""Correlated alerts: one by (tenant, correlation key), or a page of those a caller may see,
most recently seen first.

Listing walks ``incidents:alert-index`` (scored by the last time each alert was seen) with a
cursor (with several partitions, each partition's index, merged, behind a composite cursor);
the status, severity and incident filters are applied while walking, within the per-request
scan bound (``store.index_pages``). An alert seen again while a client pages moves to the
front: a walk is not a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from incidents.errors import NotFound
from incidents.model.alert import Alert, AlertStatus
from incidents.queries.visibility import Viewer
from incidents.store import keys
from incidents.store.documents import read_many
from incidents.store.index_pages import Page, PageRequest, walk_partitions


@dataclass(frozen=True)
class AlertFilter:
    status: AlertStatus | None = None
    severity: str | None = None  # canonical: SEV1..SEV4
    incident: str | None = None

    def matches(self, alert: Alert) -> bool:
        return (
            (self.status is None or alert.status == self.status)
            and (self.severity is None or alert.severity == self.severity)
            and (self.incident is None or alert.incident == self.incident)
        )


class AlertQueries:
    def __init__(self, redis: aioredis.Redis, layout: keys.Partitions = keys.ONE) -> None:
        self.redis = redis
        self.layout = layout

    async def get(self, viewer: Viewer, tenant: str, key: str) -> dict[str, object]:
        """The current alert for a correlation key in a tenant, if the caller may see it."""
        docs = await read_many(self.redis, [self.layout.of_alert(tenant, key).alert(tenant, key)])
        alert = Alert.from_dict(docs[0]) if docs[0] is not None else None
        if alert is None or not viewer.sees_alert(alert):
            raise NotFound(f"no alert with correlation key {key!r} in tenant {tenant!r}")
        return dict(alert.to_dict())

    async def page(
        self, viewer: Viewer, where: AlertFilter, asked: PageRequest
    ) -> Page[dict[str, object]]:
        """Alerts matching ``where`` that the caller may see, most recently seen first."""

        def keep(alert: Alert) -> bool:
            return where.matches(alert) and viewer.sees_alert(alert)

        indexes = [space.ALERT_INDEX for space in self.layout]
        page = await walk_partitions(self.redis, indexes, asked, self._load, keep)
        return Page([dict(a.to_dict()) for a in page.items], page.next_cursor)

    async def _load(self, doc_keys: Sequence[str]) -> list[Alert | None]:
        docs = await read_many(self.redis, list(doc_keys))
        return [None if d is None else Alert.from_dict(d) for d in docs]
