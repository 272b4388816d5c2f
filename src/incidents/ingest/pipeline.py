"""The acceptance pipeline: envelope -> type and data schema -> policy -> plan -> store.

Everything that reaches the store came through here, whichever door it entered by
(``POST /v1/events`` or a monitoring-tool adapter). Requests for one incident that arrive while
another is being stored wait together and are then planned in order and stored in one script
call (a group); each keeps its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

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
from incidents.ingest.planning import Pending, Planner
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.model.types import EventType, Extension
from incidents.off_loop import off_loop
from incidents.store.event_commits import MAX_GROUPS_PER_CALL
from incidents.store.events import Accepted, Draft, EventStore, VersionConflict
from incidents.tracing.attributes import accept_attributes
from incidents.tracing.context import incoming, kept
from incidents.tracing.spans import NoSpans, Spans

MAX_PLAN_ATTEMPTS = 20
# Requests for one incident planned and stored together at most (one script call), and the
# events in them (a group of big batches would hold the event loop, and Redis, for long).
MAX_GROUP_REQUESTS = MAX_GROUPS_PER_CALL
MAX_GROUP_EVENTS = 1000
# Checking more events than this at once takes long enough (a full schema check of a bad
# event is about 0.1 ms) to be done off the event loop.
INLINE_CHECK_EVENTS = 16


class Admission(Protocol):
    """Policy at the door: may change the event (defaults, upgrades, stamps) or refuse it."""

    def allows_unknown_type(self, event_type: str) -> bool: ...

    def admit(self, event: CloudEvent, principal: Principal) -> CloudEvent: ...


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


@dataclass(eq=False)
class Submission:
    """One request's new events on their way into the store, alone or in a group of
    submissions for one incident, and in the end its answer."""

    fresh: list[Pending]
    principal: Principal
    checked: bool = False  # the store was asked which of its events are repeats
    todo: list[Pending] = field(default_factory=list)  # the events to plan (not repeats)
    outcome: list[Accepted] | Exception | None = None


def _prefix(position: int | None) -> str:
    return f"/{position}" if position is not None else ""


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, keys: Sequence[str]) -> HeldLocks:
        """Hold the locks of all keys (taken in sorted order, so two holders cannot deadlock)."""
        return HeldLocks(self._locks, sorted(set(keys)))


class HeldLocks:
    """``async with``: the locks of ``KeyedLocks.hold``, held inside the block. A class, not
    a generator-based context manager: it is entered for every request."""

    __slots__ = ("locks", "ordered", "taken")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], ordered: list[str]) -> None:
        self.locks, self.ordered = locks, ordered
        self.taken: list[asyncio.Lock] = []

    async def __aenter__(self) -> None:
        locks = self.locks
        for key in self.ordered:
            lock, users = locks.get(key) or (asyncio.Lock(), 0)
            locks[key] = (lock, users + 1)
        try:
            for key in self.ordered:
                lock = locks[key][0]
                await lock.acquire()
                self.taken.append(lock)
        except BaseException:  # cancelled while waiting: give back what was taken
            self.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        for lock in self.taken:
            lock.release()
        self.taken = []
        for key in self.ordered:
            lock, users = self.locks[key]
            if users <= 1:
                del self.locks[key]
            else:
                self.locks[key] = (lock, users - 1)


class Ingestor:
    def __init__(
        self,
        registry: SchemaRegistry,
        store: EventStore,
        clock: Callable[[], datetime],
        admission: Admission | None = None,
        planners: Sequence[Planner] = (),
        spans: Spans | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.admission: Admission = admission or DefaultAdmission()
        self.planners = list(planners)
        self.spans: Spans = spans if spans is not None else NoSpans()
        self._locks = KeyedLocks()
        self._queued: dict[str, list[Submission]] = {}  # incident id -> requests waiting, in order

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
        large = len(raws) > INLINE_CHECK_EVENTS
        if not self.spans.enabled:  # no span, and no attributes built for one
            return await off_loop(large, self.check, raws, batch)
        with self.spans.start("schema", attributes={"messaging.batch.message_count": len(raws)}):
            return await off_loop(large, self.check, raws, batch)

    async def accept(self, events: Sequence[CloudEvent], principal: Principal) -> list[Accepted]:
        """Admit, plan and store events all together; returns one result per event. Each is
        kept with its trace context: its own, else the request's (``tracing.context``)."""
        if not self.spans.enabled:
            return await self._accept(events, principal)
        with self.spans.start("accept", attributes=accept_attributes(events)):
            return await self._accept(events, principal)

    async def _accept(self, events: Sequence[CloudEvent], principal: Principal) -> list[Accepted]:
        trace = incoming.get()
        with self.spans.start("policy"):
            admitted = [self.admission.admit(kept(e, trace), principal) for e in events]
        results: list[Accepted | None] = [None] * len(admitted)
        first_of: dict[tuple[str, str], int] = {}
        fresh: list[Pending] = []
        for i, event in enumerate(admitted):
            key = (event.source, event.id)
            if key in first_of:
                continue  # a repeat inside one batch is answered like the first
            first_of[key] = i
            fresh.append(Pending(i, event))
        submission = Submission(fresh, principal)
        named = {e.get(Extension.INCIDENT_ID) for e in admitted}
        if len(named) == 1 and None not in named and "" not in named:
            with self.spans.start("store"):
                await self._join(str(named.pop()), submission)
        else:
            # Events naming no incident (which an alert may link or declare) and batches that
            # span incidents are planned and stored alone, holding every named incident's
            # lock (taken in sorted order, so two holders never deadlock); a group takes just
            # its incident's lock, so it and these never interleave on one incident.
            async with self._locks.hold(sorted({str(i) for i in named if i})):
                with self.spans.start("store"):
                    await self._run([submission])
        if isinstance(submission.outcome, Exception):
            raise submission.outcome
        assert submission.outcome is not None
        stored = submission.outcome
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

    async def _join(self, incident_id: str, submission: Submission) -> None:
        """Plan and store ``submission`` with the other requests for its incident that are
        waiting, in arrival order, when the incident's turn comes: while one group is on its
        way to Redis the next one gathers, so a busy incident takes one script call per
        group, not one per submission. Whoever gets the incident's lock first runs the group it
        finds queued; the others find their answer ready."""
        queue = self._queued.setdefault(incident_id, [])
        queue.append(submission)
        try:
            async with self._locks.hold([incident_id]):
                while submission.outcome is None:
                    await self._run(self._take(incident_id))
        finally:
            queue = self._queued.get(incident_id, [])
            if submission in queue:  # cancelled while waiting: nobody is left to answer
                queue.remove(submission)
                if not queue:
                    del self._queued[incident_id]

    def _take(self, incident_id: str) -> list[Submission]:
        queue = self._queued.get(incident_id)
        if not queue:
            raise RuntimeError(f"no request is waiting for incident {incident_id!r}")
        size, events = 1, len(queue[0].fresh)
        while size < min(len(queue), MAX_GROUP_REQUESTS):
            events += len(queue[size].fresh)
            if events > MAX_GROUP_EVENTS:
                break
            size += 1
        group = queue[:size]
        del queue[:size]
        if not queue:
            del self._queued[incident_id]
        return group

    async def _run(self, group: list[Submission]) -> None:
        """Plan and store ``group``, leaving an outcome on every request in it."""
        try:
            await self._plan_and_store(group)
        except Exception as exc:  # every request of the group hears it (a 503, say)
            for r in group:
                if r.outcome is None:
                    r.outcome = exc
        except BaseException:
            for r in group:  # the others' handlers are still waiting for an answer
                if r.outcome is None:
                    r.outcome = ServiceUnavailable(
                        "storing the event was interrupted; retry (a retry of a stored event"
                        " is answered 200 as a duplicate)",
                        retry_after=1,
                    )
            raise
        for r in group:
            if r.outcome is None:
                r.outcome = ServiceUnavailable(
                    "the incident is being changed by many requests at once; retry",
                    retry_after=1,
                )

    async def _plan_and_store(self, group: list[Submission]) -> None:
        # The first attempt trusts the store to spot duplicates (saving a round trip). If
        # planning refuses a request, or a version moved on, its next attempt first asks which
        # of its events are repeats, so a retried event is answered as a duplicate, never
        # refused. A refused request leaves no trace in the planning of those after it, so
        # they go on to the store; it is planned again after them. Every event of a group
        # names the group's incident and writes its document, so a request after one that
        # conflicts (or turns out to be a repeat) conflicts too, and is planned again.
        for _ in range(MAX_PLAN_ATTEMPTS):
            todo = [r for r in group if r.outcome is None]
            if not todo:
                return
            await self._find_repeats(todo)
            for r in todo:
                for p in r.fresh:
                    p.writes.clear()
                    p.index.clear()
                for p in r.todo:
                    await self._assign_incident(p)
            now = self.clock()
            refusals, end = await self._plan(todo, now)
            ready: list[Submission] = []
            # A second refusal is the request's own answer only if the state it was judged on
            # is what the store ends up holding: every request planned before it this round
            # stored (none conflicted with another replica's write, none failed).
            judged: list[tuple[Submission, IncidentsError, list[Submission]]] = []
            for r, refused in zip(todo[:end], refusals, strict=True):
                if refused is None:
                    ready.append(r)
                elif r.checked:
                    judged.append((r, refused, list(ready)))
                else:  # perhaps a retry, or planned on stale documents
                    r.checked = True
                    self._forget()
            if ready:
                await self._store(ready, now)
            for r, refused, before in judged:
                if all(isinstance(b.outcome, list) for b in before):
                    r.outcome = refused  # its own answer
                else:
                    self._forget()  # planned on writes that did not happen: plan it again
        # Whatever is still open gets the 503 of _run.

    async def _find_repeats(self, todo: list[Submission]) -> None:
        """Set each request's events to plan: all of them, or for a request that was refused
        or conflicted before, those the store does not hold yet (one look-up for all)."""
        checked = [r for r in todo if r.checked]
        for r in todo:
            r.todo = r.fresh
        events = [p.event for r in checked for p in r.fresh]
        if not events:
            return
        existing = iter(await self.store.existing(events))
        for r in checked:
            r.todo = [p for p in r.fresh if next(existing) is None]

    async def _plan(
        self, todo: list[Submission], now: datetime
    ) -> tuple[list[IncidentsError | None], int]:
        """Each request's refusal (None: planned), and how many of the requests to go on
        with this round. Planners run in turn; a refusal by any but the first ends the round
        at that request, because the planners before planned the requests after it on top
        of it: those are planned again next round."""
        refusals: list[IncidentsError | None] = [None] * len(todo)
        for n, planner in enumerate(self.planners):
            live = [i for i, refused in enumerate(refusals) if refused is None]
            answer = await planner.plan([todo[i].todo for i in live], now)
            late = [i for i, refused in zip(live, answer, strict=True) if refused is not None]
            for i in late:
                refusals[i] = answer[live.index(i)]
            if n and late:
                return refusals[: late[0] + 1], late[0] + 1
        return refusals, len(todo)

    async def _store(self, ready: list[Submission], now: datetime) -> None:
        drafts = [
            [Draft(p.event, r.principal.id, p.writes, p.index, p.plan) for p in r.fresh]
            for r in ready
        ]
        try:
            answers = await self.store.accept_each(drafts, now)
        except BaseException:
            self._forget()
            raise
        stale = False
        for r, answer in zip(ready, answers, strict=True):
            if isinstance(answer, VersionConflict):
                r.checked = True
                stale = True
            elif isinstance(answer, Exception):
                r.outcome = answer
                stale = True
            else:
                r.outcome = answer
                for planner in self.planners:
                    planner.stored(r.fresh, answer)
        if stale:
            self._forget()

    def _forget(self) -> None:
        for planner in self.planners:
            planner.forget()

    async def _assign_incident(self, pending: Pending) -> None:
        event = pending.event
        if event.type == EventType.INCIDENT_DECLARE and not event.get(Extension.INCIDENT_ID):
            # Numbered for the partition of (source, id), where the declaration is stored.
            space = self.store.layout.of_event(event.source, event.id)
            assigned = await self.store.next_incident_id(space)
            pending.event = event.with_attributes(imincidentid=assigned)
