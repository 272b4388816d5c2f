"""Silences: create one, list and read those the caller may see, expire one.

Admins and subscribers may silence: an admin anything, a subscriber only its own
subscriptions (named in ``subscriptions``). Each sees and expires the silences it created
(admins all); another's is NotFound, as another's subscription is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import Conflict, InvalidRequest, NotFound
from incidents.model.principal import SUBSCRIBER, Principal
from incidents.queries.query_set import Queries
from incidents.silences.silence import (
    Silence,
    SilenceState,
    end_after,
    parse_silence,
    scope_problems,
)
from incidents.silences.store import SilenceStore


def silence_document(
    expression: object,
    comment: str,
    ends: str,
    at: datetime,
    starts: str | None = None,
    subscriptions: Sequence[str] = (),
    recurrence: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The JSON document of a silence as a person gives its parts (the console's form, the
    CLI's flags): ``ends`` a time or a length after the start (``2h``), the start ``at``
    unless ``starts`` names one. What is wrong with a part is judged by ``create``."""
    document: dict[str, object] = {"filter": expression, "comment": comment}
    start = at
    if starts is not None:
        document["starts_at"] = starts
        with contextlib.suppress(ValueError):  # create says what is wrong with it
            start = datetime.fromisoformat(starts)
    document["ends_at"] = end_after(ends, start)
    if subscriptions:
        document["subscriptions"] = list(subscriptions)
    if recurrence is not None:
        document["recurrence"] = dict(recurrence)
    return document


class SilenceActions:
    """The silence operations, built once with the app's stores and clock."""

    def __init__(
        self,
        store: SilenceStore,
        deliveries: DeliveryQueries,
        queries: Queries,
        clock: Callable[[], datetime],
        most: int,
    ) -> None:
        self.store = store
        self.deliveries = deliveries
        self.queries = queries
        self.clock = clock
        self.most = most  # INCIDENTS_MAX_SILENCES: how many may be pending or active at once

    async def create(self, principal: Principal, document: object) -> Silence:
        """Check and store a new silence from its JSON document (the API's input)."""
        principal.require(SUBSCRIBER)
        at = self.clock()
        silence = parse_silence(document, principal.id, at)
        subs = await self.deliveries.subscriptions.get_many(silence.subscriptions)
        owners = {i: s.owner for i, s in subs.items()}
        problems = scope_problems(silence.subscriptions, owners, principal.id, principal.is_admin)
        if problems:
            raise InvalidRequest(
                "the silence names subscriptions you cannot silence", errors=problems
            )
        if await self.store.running(at) >= self.most:
            raise Conflict(
                f"{self.most} silences are already pending or active (INCIDENTS_MAX_SILENCES); "
                "expire one first"
            )
        await self.store.save(silence, at)
        return silence

    async def visible(
        self, principal: Principal, state: SilenceState | None = None
    ) -> list[Silence]:
        """The silences ``principal`` may see (its own; admins all), in ``state`` if named."""
        principal.require(SUBSCRIBER)
        at = self.clock()
        viewer = self.queries.viewer(principal)
        after = None if state is SilenceState.EXPIRED or state is None else at
        found = await self.store.list(after=after)
        return [
            s
            for s in found
            if viewer.owns(s.created_by) and (state is None or s.state(at) is state)
        ]

    async def get(self, principal: Principal, silence_id: str) -> Silence:
        """The silence, if ``principal`` created it (admins: any); else NotFound."""
        principal.require(SUBSCRIBER)
        found = await self.store.get(silence_id)
        if found is None or not self.queries.viewer(principal).owns(found.created_by):
            raise NotFound(f"no silence {silence_id!r}")
        return found

    async def expire(self, principal: Principal, silence_id: str) -> Silence:
        """End the silence now (it is kept, listed as expired); expiring it again changes
        nothing."""
        found = await self.get(principal, silence_id)
        at = self.clock()
        ended = found.expired(at, principal.id)
        if ended is not found:
            await self.store.save(ended, at)
        return ended
