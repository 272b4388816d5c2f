"""The acceptance pipeline: envelope -> type and data schema -> policy -> plan -> store.

Everything that reaches the store came through here, whichever door it entered by
(``POST /v1/events`` or a monitoring-tool adapter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from incidents.auth import Principal
from incidents.errors import (
    FieldError,
    IncidentsError,
    InvalidCloudEvent,
    PolicyDenied,
    ServiceUnavailable,
    UnknownEventType,
    UnprocessableEvent,
    UnsupportedMediaType,
)
from incidents.ingest.envelope import normalize, validate_raw
from incidents.ingest.modes import is_json, media_type
from incidents.model.cloudevent import CloudEvent
from incidents.model.plan import NO_PLAN, Plan
from incidents.model.schemas import SchemaRegistry
from incidents.model.types import EventType, Extension
from incidents.offload import off_loop
from incidents.store.events import (
    Accepted,
    Draft,
    EventStore,
    IndexAdd,
    VersionConflict,
    VersionedWrite,
)

MAX_PLAN_ATTEMPTS = 20
# Checking more events than this at once takes long enough (a full schema check of a bad
# event is about 0.1 ms) to be done off the event loop.
INLINE_CHECK_EVENTS = 16


class Admission(Protocol):
    """Policy at the door: may change the event (defaults, upgrades, stamps) or refuse it."""

    def allows_unknown_type(self, event_type: str) -> bool: ...

    def admit(self, event: CloudEvent, principal: Principal) -> CloudEvent: ...


@dataclass
class Pending:
    """An event on its way into the store, and the writes planned to go with it."""

    position: int
    event: CloudEvent
    writes: list[VersionedWrite] = field(default_factory=list)
    index: list[IndexAdd] = field(default_factory=list)
    plan: Plan = NO_PLAN


class Planner(Protocol):
    """Plans the state changes an accepted event causes (incidents, alerts), read-then-write:
    each write carries the version it read, and the store refuses it if that moved on.

    ``stored`` is told which writes the store took; ``forget`` that planning or storing failed,
    so anything a planner remembers between calls may be stale."""

    async def plan(self, pending: Sequence[Pending], now: datetime) -> None: ...

    def stored(self, pending: Sequence[Pending], results: Sequence[Accepted]) -> None: ...

    def forget(self) -> None: ...


class DefaultAdmission:
    """Used until policy files are loaded: producers may publish what their role allows;
    events without labels are internal."""

    def allows_unknown_type(self, event_type: str) -> bool:
        return False

    def admit(self, event: CloudEvent, principal: Principal) -> CloudEvent:
        if not principal.may_publish(event.type):
            raise PolicyDenied(f"principal {principal.name!r} may not publish {event.type!r}")
        return event.with_attributes(
            imdataclass=event.get(Extension.DATA_CLASS) or "internal",
            imvisibility=event.get(Extension.VISIBILITY) or "internal",
            imtenant=principal.tenant,
        )


def _prefix(position: int | None) -> str:
    return f"/{position}" if position is not None else ""


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Hold the locks of all keys (taken in sorted order, so two holders cannot deadlock)."""
        ordered = sorted(set(keys))
        for key in ordered:
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        taken: list[asyncio.Lock] = []
        try:
            for key in ordered:
                lock = self._locks[key][0]
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in taken:
                lock.release()
            for key in ordered:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class Ingestor:
    def __init__(
        self,
        registry: SchemaRegistry,
        store: EventStore,
        clock: Callable[[], datetime],
        admission: Admission | None = None,
        planners: Sequence[Planner] = (),
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.admission: Admission = admission or DefaultAdmission()
        self.planners = list(planners)
        self._locks = KeyedLocks()

    def check(self, raws: Sequence[object], batch: bool) -> list[CloudEvent]:
        """Envelope rules (400), then known type and data schema (415/422), for every event;
        a batch is judged whole and the errors name each bad event's index."""
        errors: list[FieldError] = []
        for i, raw in enumerate(raws):
            errors.extend(validate_raw(self.registry, raw, _prefix(i if batch else None)))
        if errors:
            what = "a batch event" if batch else "the event"
            raise InvalidCloudEvent(
                f"{what} breaks CloudEvents rules ({len(errors)} problem(s))", errors=errors
            )
        events = [normalize(raw) for raw in raws]
        unknown: list[FieldError] = []
        data_errors: list[FieldError] = []
        for i, event in enumerate(events):
            prefix = _prefix(i if batch else None)
            if not self.registry.knows(event.type):
                if not self.admission.allows_unknown_type(event.type):
                    unknown.append(
                        FieldError(prefix + "/type", f"{event.type!r} is not a known event type")
                    )
                continue
            ct = event.get("datacontenttype")
            if event.data_base64 is not None or (
                isinstance(ct, str) and not is_json(media_type(ct))
            ):
                raise UnsupportedMediaType(
                    f"{event.type} data must be JSON (datacontenttype application/json), not {ct!r}"
                )
            data = event.data if event.data is not None else {}
            data_errors.extend(self.registry.data_errors(event.type, data, prefix + "/data"))
        if unknown:
            raise UnknownEventType(
                "unknown event type; known types are " + ", ".join(self.registry.event_types),
                errors=unknown,
            )
        if data_errors:
            raise UnprocessableEvent(
                f"event data fails its JSON Schema ({len(data_errors)} problem(s))",
                errors=data_errors,
            )
        return events

    async def check_off_loop(self, raws: Sequence[object], batch: bool) -> list[CloudEvent]:
        """``check``, in a worker thread when there are many events, so a long batch does
        not hold up every other request."""
        return await off_loop(len(raws) > INLINE_CHECK_EVENTS, self.check, raws, batch)

    async def accept(self, events: Sequence[CloudEvent], principal: Principal) -> list[Accepted]:
        """Admit, plan and store events all together; returns one result per event."""
        admitted = [self.admission.admit(e, principal) for e in events]
        results: list[Accepted | None] = [None] * len(admitted)
        first_of: dict[tuple[str, str], int] = {}
        fresh: list[Pending] = []
        for i, event in enumerate(admitted):
            key = (event.source, event.id)
            if key in first_of:
                continue  # a repeat inside one batch is answered like the first
            first_of[key] = i
            fresh.append(Pending(i, event))
        # Serialize work on the same incident inside this process, so that concurrent requests
        # for one busy incident queue here instead of failing each other's version checks.
        # Across API replicas the store's version check still keeps every update.
        incident_ids = sorted(
            {str(e.get(Extension.INCIDENT_ID)) for e in admitted if e.get(Extension.INCIDENT_ID)}
        )
        async with self._locks.hold(incident_ids):
            stored = await self._plan_and_store(fresh, principal)
        for p, result in zip(fresh, stored, strict=True):
            results[p.position] = result
        for i, event in enumerate(admitted):
            if results[i] is None:
                original = results[first_of[(event.source, event.id)]]
                assert original is not None
                results[i] = Accepted(
                    event.id, event.source, original.sequence, True, original.incident_id
                )
        return [r for r in results if r is not None]

    async def _plan_and_store(self, fresh: list[Pending], principal: Principal) -> list[Accepted]:
        # The first attempt trusts the store to spot duplicates (saving a round trip). If
        # planning refuses an event, or a version moved on, the next attempt first asks which
        # events are repeats, so a retried event is answered as a duplicate, never refused.
        checked = False
        for _ in range(MAX_PLAN_ATTEMPTS):
            todo = fresh
            if checked:
                existing = await self.store.existing([p.event for p in fresh])
                todo = [p for p, seq in zip(fresh, existing, strict=True) if seq is None]
            for p in fresh:
                p.writes.clear()
                p.index.clear()
            for p in todo:
                await self._assign_incident(p)
            now = self.clock()
            try:
                for planner in self.planners:
                    await planner.plan(todo, now)
            except IncidentsError:
                self._forget()
                if checked:
                    raise
                checked = True
                continue
            drafts = [Draft(p.event, principal.id, p.writes, p.index, p.plan) for p in fresh]
            try:
                stored = await self.store.accept(drafts, now)
            except VersionConflict:
                self._forget()
                checked = True
                continue
            except BaseException:
                self._forget()
                raise
            for planner in self.planners:
                planner.stored(fresh, stored)
            return stored
        raise ServiceUnavailable(
            "the incident is being changed by many requests at once; retry", retry_after=1
        )

    def _forget(self) -> None:
        for planner in self.planners:
            planner.forget()

    async def _assign_incident(self, pending: Pending) -> None:
        event = pending.event
        if event.type == EventType.INCIDENT_DECLARE and not event.get(Extension.INCIDENT_ID):
            pending.event = event.with_attributes(imincidentid=await self.store.next_incident_id())
