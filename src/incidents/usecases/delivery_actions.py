"""Deliveries: a subscription's delivery log and its replay since a time, the dead letters
and their redrive (admins), and what became of one event for each subscription."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import redis.asyncio as aioredis

from incidents.delivery.delivery_queries import DeliveryLog, DeliveryQueries
from incidents.delivery.lanes import DEAD, PENDING, Delivery
from incidents.errors import Conflict, FieldError, InvalidRequest, NotFound
from incidents.model.principal import ADMIN, SUBSCRIBER, Principal
from incidents.model.schemas import SchemaRegistry
from incidents.queries.query_set import Queries
from incidents.routing.explain import JUDGED_ON, explain
from incidents.routing.fanout import routed_through
from incidents.routing.replay import Replay, replay
from incidents.silences.store import SilenceStore
from incidents.store.redis import guarded
from incidents.subscriptions.owner_views import OwnerViews
from incidents.subscriptions.subscription import Subscription


def replay_since(raw: object) -> datetime:
    """The time a replay starts from, as a request gives it (an RFC 3339 time with a zone);
    InvalidRequest quoting it otherwise."""
    try:
        since = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise InvalidRequest(
            f"since={raw!r} must be an RFC 3339 time with a zone, e.g. 2024-05-01T00:00:00Z",
            errors=[FieldError("/since", "an RFC 3339 time with a zone is required")],
        )
    return since


def _enabled(sub: Subscription) -> None:
    if not sub.active:
        raise Conflict(f"subscription {sub.id!r} is disabled ({sub.reason}); enable it first")


class DeliveryActions:
    """The delivery operations, built once with the app's Redis, stores and clock."""

    def __init__(
        self,
        redis: aioredis.Redis,
        deliveries: DeliveryQueries,
        queries: Queries,
        registry: SchemaRegistry,
        silences: SilenceStore,
        clock: Callable[[], datetime],
    ) -> None:
        self.redis = redis
        self.deliveries = deliveries
        self.queries = queries
        self.registry = registry
        self.silences = silences
        self.clock = clock

    async def log(self, principal: Principal, sub_id: str, limit: int) -> DeliveryLog:
        """The latest ``limit`` attempts of a subscription ``principal`` owns; else NotFound."""
        principal.require(SUBSCRIBER)
        return await self.deliveries.log(self.queries.viewer(principal), sub_id, limit)

    async def replay(self, principal: Principal, sub: Subscription, since: datetime) -> Replay:
        """Queue again, for ``sub`` (found by ``SubscriptionActions.owned``), every stored
        event accepted since ``since``; Conflict while it is disabled."""
        principal.require(SUBSCRIBER)
        _enabled(sub)
        return await replay(
            self.redis,
            sub,
            since,
            clock=lambda: self.clock().timestamp(),
            layout=self.deliveries.lanes.layout,
        )

    async def dead_letters(self, principal: Principal, limit: int) -> list[dict[str, object]]:
        principal.require(ADMIN)
        return await self.deliveries.dead_letters(limit)

    async def redrive(self, principal: Principal, delivery_id: str) -> Delivery:
        """Queue a dead letter again, its attempts counted from zero; Conflict when its
        subscription is gone or disabled."""
        principal.require(ADMIN)
        lanes = self.deliveries.lanes
        found = await lanes.get(delivery_id)
        if found is None or found.state != DEAD:
            raise NotFound(f"no dead letter {delivery_id!r}")
        sub = await self.deliveries.subscriptions.get(found.sub)
        if sub is None:
            raise Conflict(f"the subscription {found.sub!r} of {delivery_id!r} no longer exists")
        _enabled(sub)
        again = replace(found, state=PENDING, attempts=0, next_at=None, reason="")
        await lanes.enqueue([again], self.clock().timestamp(), force=True)
        return again

    async def event_routes(
        self, principal: Principal, event_id: str, source: str | None
    ) -> dict[str, object]:
        """What became of an event for each subscription ``principal`` owns (admins: all),
        as ``GET /v1/events/{id}/routes`` answers it and the console's event page shows it."""
        principal.require(SUBSCRIBER)
        viewer = self.queries.viewer(principal)
        stored = await self.queries.events.stored(viewer, event_id, source)
        subs = await self.deliveries.subscriptions.list(
            None if principal.is_admin else principal.id
        )
        at = self.clock()
        silences = await self.silences.list(after=at)
        owners = OwnerViews(self.redis, self.registry)  # per call: it keeps owners as read
        layout = self.deliveries.lanes.layout
        async with guarded("reading how far routing is"):
            # the event's partition's: sequences grow within a partition
            space = layout.of_sequence(stored.sequence)
            routed = await routed_through(self.redis, space, layout)
        found = await explain(stored, subs, self.deliveries.lanes, owners, silences, at, routed)
        event = stored.event
        return {
            "event": {"id": event.id, "source": event.source, "type": event.type,
                      "sequence": stored.sequence},
            "judged_at": at.isoformat(),
            "judged_on": JUDGED_ON,
            "routes": [r.to_dict() for r in found],
        }  # fmt: skip
