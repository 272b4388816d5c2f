"""Stored events read back by their CloudEvents id, as the caller may see them."""

from __future__ import annotations

from incidents.errors import InvalidRequest, NotFound
from incidents.model.cloudevent import StoredEvent
from incidents.queries.visibility import Viewer
from incidents.store.events import EventStore


class EventQueries:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def get(
        self, viewer: Viewer, event_id: str, source: str | None = None
    ) -> dict[str, object]:
        """The one stored event with this id (from ``source``, when named) that the caller
        may see, redacted for it. Events it may not see are as if absent; two visible events
        with the same id from different sources need ``source`` (a 400 listing them)."""
        shown = viewer.event(await self.stored(viewer, event_id, source))
        if shown is None:  # the visibility rule passed; judge withholds on the same rule
            raise NotFound(f"no event with id {event_id!r}")
        return dict(shown.to_dict())

    async def stored(self, viewer: Viewer, event_id: str, source: str | None = None) -> StoredEvent:
        """The stored event as ``get`` finds it (not redacted), for reads about the event
        rather than of it (what became of it)."""
        found = await self.store.find(event_id, source)
        visible = [s for s in found if viewer.may_read(s)]
        if not visible:
            named = f" from {source!r}" if source else ""
            raise NotFound(f"no event with id {event_id!r}{named}")
        if len(visible) > 1:
            raise InvalidRequest(
                f"{len(visible)} events have id {event_id!r}; name one with ?source=",
                extra={"sources": [s.event.source for s in visible]},
            )
        return visible[0]
