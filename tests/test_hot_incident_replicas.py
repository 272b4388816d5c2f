"""Grouped requests for one incident against writes from another API replica: a refusal is
final only when the state it was judged on is what the store holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis

from incidents.errors import IllegalTransition
from incidents.settings import Settings
from incidents.store.events import Draft, EventStore
from incidents.store.redis import connect_async
from tests.support import event
from tests.test_hot_incident import ADMIN, INC, ingestor_for, on, redis_url_of, stored_incident


class Injecting(EventStore):
    """Before some script calls, another replica writes to the incident."""

    def __init__(self, client: Any, inject: dict[int, Any]) -> None:
        super().__init__(client)
        self.calls = 0
        self.inject = inject

    async def accept_each(self, requests: Sequence[Sequence[Draft]], now: datetime) -> list[Any]:
        self.calls += 1
        action = self.inject.get(self.calls)
        if action is not None:
            await action()
        return await super().accept_each(requests, now)


def test_a_refusal_judged_on_a_request_that_then_conflicts_is_judged_again(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """In a group, B (close) is refused on top of A (mitigate); A then conflicts with another
    replica's writes and is refused once that replica resolved the incident: B is judged
    again on the resolved incident and accepted, not left with a 409 about a state that never
    existed."""

    async def run() -> list[Any]:
        c1 = connect_async(redis_url_of(settings))
        c2 = connect_async(redis_url_of(settings))
        replica2 = ingestor_for(settings, EventStore(c2))

        async def replica2_sends(e: dict[str, Any]) -> None:
            await replica2.accept(replica2.check([e], batch=False), ADMIN)

        store = Injecting(c1, {})
        ingestor = ingestor_for(settings, store)
        try:
            await ingestor.accept(
                ingestor.check([event("im.incident.declare", imincidentid=INC)], batch=False), ADMIN
            )
            base = store.calls
            store.inject = {
                base + 2: lambda: replica2_sends(on("im.incident.note", {"text": "r2"})),
                base + 3: lambda: replica2_sends(on("im.incident.resolve")),
            }
            lead = ingestor.check([on("im.incident.note", {"text": "lead"})], batch=False)
            a = ingestor.check([on("im.incident.mitigate")], batch=False)
            b = ingestor.check([on("im.incident.close")], batch=False)
            return list(
                await asyncio.gather(
                    ingestor.accept(lead, ADMIN),
                    ingestor.accept(a, ADMIN),
                    ingestor.accept(b, ADMIN),
                    return_exceptions=True,
                )
            )
        finally:
            await c1.aclose()
            await c2.aclose()

    answers = asyncio.run(run())
    doc = stored_incident(redis_client, INC)
    # A (mitigate) is refused because replica 2 resolved first; B (close) is legal then.
    assert isinstance(answers[1], IllegalTransition)
    assert isinstance(answers[2], list), answers[2]
    assert doc["status"] == "closed"
