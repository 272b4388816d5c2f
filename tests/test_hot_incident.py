"""A hot incident: requests for one incident that wait while another is being stored are
planned together, in order, and committed in one store call, each keeping its own answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import redis

from incidents.errors import IllegalTransition, StoreUnavailable
from incidents.ingest.pipeline import Ingestor
from incidents.lifecycle import machine
from incidents.model.cloudevent import StoredEvent
from incidents.model.incident import Incident
from incidents.model.principal import Principal
from incidents.model.schemas import SchemaRegistry
from incidents.policy.files import load_policy_files
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.events import Accepted, EventStore
from incidents.store.redis import connect_async
from incidents.write_planner import WritePlanner
from tests.support import ADMIN_TOKEN, TEST_TLS, event
from tests.test_group_commit import script_calls

ADMIN = Principal(id="admin", name="admin", roles=frozenset({"admin"}))
INC = "INC-HOT"


def replayed(timeline: Sequence[StoredEvent]) -> Incident:
    """The incident the state machine gives over ``timeline``, in order (each step legal)."""
    incident: Incident | None = None
    for stored in timeline:
        incident = machine.apply(incident, stored.event, stored.ingested_at)
    assert incident is not None
    return incident


def stored_incident(client: redis.Redis, incident_id: str) -> dict[str, Any]:
    raw = client.hget(keys.incident(incident_id), "j")
    assert isinstance(raw, bytes)
    document: dict[str, Any] = orjson.loads(raw)
    return document


def ingestor_for(settings: Settings, store: EventStore) -> Ingestor:
    """The ingestor the app builds (schemas, alert rules, the write planner), on ``store``."""
    registry = SchemaRegistry.load(settings.schemas_dir)
    rules = load_policy_files(settings.policies_dir, settings.schemas_dir).alerts
    return Ingestor(registry, store, wall_clock, planners=[WritePlanner(store, rules)])


def wall_clock() -> datetime:
    return datetime.now(UTC)


def redis_url_of(settings: Settings) -> str:
    assert settings.redis_url is not None
    return settings.redis_url


def on(type_: str, data: dict[str, Any] | None = None, **attrs: Any) -> dict[str, Any]:
    return event(type_, data, imincidentid=INC, **attrs)


def test_waiting_requests_are_planned_in_order_and_committed_together(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Eleven requests queued behind one for the same incident take a few script calls, not
    one each; illegal moves get their 409 without failing the others, repeats are answered as
    duplicates, and the state is what the state machine gives over the timeline."""
    note_a = on("im.incident.note", {"text": "a"})
    note_d = on("im.incident.note", {"text": "d"})
    opened = {"status": "open", "reason": "regressed"}
    requests: list[list[dict[str, Any]]] = [
        [note_a],
        [on("im.incident.close")],  # open -> closed: illegal
        [on("im.incident.mitigate")],
        [on("im.incident.note", {"text": "b"}), on("im.incident.close")],  # illegal: none stored
        [note_a],  # a repeat of the first request
        [on("im.incident.state_change", opened)],
        [on("im.incident.state_change", opened)],  # open -> open: illegal
        [on("im.incident.resolve")],
        [on("im.incident.close")],
        [on("im.incident.note", {"text": "c"})],  # notes are allowed on a closed incident
        [on("im.incident.mitigate")],  # closed is final
        [note_d, note_d],  # a repeat inside one batch
    ]

    async def run() -> tuple[list[list[Accepted] | BaseException], int, list[StoredEvent]]:
        client = connect_async(redis_url_of(settings))
        store = EventStore(client)
        ingestor = ingestor_for(settings, store)
        try:
            declare = event("im.incident.declare", imincidentid=INC)
            await ingestor.accept(ingestor.check([declare], batch=False), ADMIN)
            checked = [ingestor.check(r, batch=True) for r in requests]
            before = script_calls(redis_client)
            answers = await asyncio.gather(
                *(ingestor.accept(events, ADMIN) for events in checked), return_exceptions=True
            )
            calls = script_calls(redis_client) - before
            return answers, calls, await store.timeline(INC)
        finally:
            await client.aclose()

    answers, calls, timeline = asyncio.run(run())

    refused = {1, 3, 6, 10}
    for n, answer in enumerate(answers):
        if n in refused:
            assert isinstance(answer, IllegalTransition), (n, answer)
        else:
            assert isinstance(answer, list), (n, answer)
    first, repeat, batch = answers[0], answers[4], answers[11]
    assert isinstance(first, list) and isinstance(repeat, list) and isinstance(batch, list)
    assert not first[0].duplicate and repeat[0].duplicate
    assert repeat[0].sequence == first[0].sequence
    assert [r.duplicate for r in batch] == [False, True]
    assert batch[0].sequence == batch[1].sequence
    fresh = [a for n, a in enumerate(answers) if isinstance(a, list) and n != 4]
    assert all(not a[0].duplicate for a in fresh)

    # The timeline: the declare, then the accepted requests in the order they were sent.
    kinds = [(s.event.type, (s.event.data or {}).get("text")) for s in timeline]
    assert kinds == [
        ("im.incident.declare", None),
        ("im.incident.note", "a"),
        ("im.incident.mitigate", None),
        ("im.incident.state_change", None),
        ("im.incident.resolve", None),
        ("im.incident.close", None),
        ("im.incident.note", "c"),
        ("im.incident.note", "d"),
    ]
    sequences = [s.sequence for s in timeline]
    assert sequences == sorted(sequences)
    assert replayed(timeline).to_dict() == stored_incident(redis_client, INC)
    assert stored_incident(redis_client, INC)["status"] == "closed"
    # One request alone, then the eleven queued behind it: a script call for each round of
    # that group (a repeat or a refusal sends the requests after it round once more). Each
    # request took its own script call when requests for one incident queued one by one.
    assert calls <= 4, calls


async def post_all(gateway: str, bodies: Sequence[object]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(
        verify=TEST_TLS, base_url=gateway, headers=headers, limits=limits, timeout=30
    ) as c:

        async def post(body: object) -> httpx.Response:
            batch = isinstance(body, list)
            kind = "cloudevents-batch" if batch else "cloudevents"
            return await c.post(
                "/v1/events",
                content=json.dumps(body),
                headers={"Content-Type": f"application/{kind}+json"},
            )

        return await asyncio.gather(*(post(b) for b in bodies))


def test_concurrent_requests_on_one_incident_each_get_their_answer(
    gateway: str, client: httpx.Client, redis_url: str, redis_client: redis.Redis
) -> None:
    """Many concurrent requests on one incident over HTTP (notes, racing status flips,
    illegal moves, repeats): each gets its own answer, the timeline follows the sequence,
    the state is the state machine's over it, and they take fewer script calls than
    requests."""
    declared = client.post(
        "/v1/events",
        content=json.dumps(event("im.incident.declare", imincidentid=INC)),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert declared.status_code == 202, declared.text
    notes = [on("im.incident.note", {"text": str(n)}) for n in range(30)]
    bodies: list[object] = [*notes, *notes[:8]]  # eight notes sent twice
    for n in range(8):
        bodies.append(on("im.incident.state_change", {"status": "mitigated", "reason": str(n)}))
        bodies.append(on("im.incident.state_change", {"status": "open", "reason": str(n)}))
    closes = [on("im.incident.close") for _ in range(4)]  # never resolved: always illegal
    batches = [[on("im.incident.note", {"text": "lost"}), on("im.incident.close")]]
    bodies += [*closes, *batches]

    before = script_calls(redis_client)
    responses = asyncio.run(post_all(gateway, bodies))
    calls = script_calls(redis_client) - before

    codes = [r.status_code for r in responses]
    assert all(code in (200, 202, 409) for code in codes), [r.text for r in responses]
    for note in notes[8:]:
        assert codes[bodies.index(note)] == 202
    for n in range(8):
        pair = sorted([codes[n], codes[len(notes) + n]])
        assert pair == [200, 202], pair
        first, again = responses[n].json(), responses[len(notes) + n].json()
        assert first["accepted"][0]["sequence"] == again["accepted"][0]["sequence"]
    for body, response in zip(bodies, responses, strict=True):
        if body in closes or body in batches:
            assert response.status_code == 409, response.text
            assert response.headers["content-type"].startswith("application/problem+json")

    accepted = {
        a["id"]
        for r in responses
        if r.status_code == 202
        for a in r.json()["accepted"]
        if not a.get("duplicate")
    }
    timeline = client.get(f"/v1/incidents/{INC}/timeline").json()["timeline"]
    ids = [t["id"] for t in timeline]
    assert set(ids[1:]) == accepted and len(ids) == 1 + len(accepted)
    sequences = [t["sequence"] for t in timeline]
    assert sequences == sorted(sequences)
    stored = asyncio.run(read_timeline(redis_url, INC))
    assert replayed(stored).to_dict() == stored_incident(redis_client, INC)
    # Requests that stored something each took a script call when they queued one by one;
    # grouped, far fewer.
    committed = sum(code in (200, 202) for code in codes)
    assert calls * 2 <= committed, (calls, committed)


async def read_timeline(url: str, incident_id: str) -> list[StoredEvent]:
    client = connect_async(url)
    try:
        return await EventStore(client).timeline(incident_id)
    finally:
        await client.aclose()


def test_every_request_of_a_group_hears_that_replicas_fell_short(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """With INCIDENTS_MIN_REPLICAS unmet, every request committed in a group gets the 503
    (its events kept), and the group still took one script call, not one per request."""
    notes = [[on("im.incident.note", {"text": str(n)})] for n in range(10)]

    async def run() -> tuple[list[list[Accepted] | BaseException], int]:
        client = connect_async(redis_url_of(settings))
        ingestor = ingestor_for(settings, EventStore(client, min_replicas=1, replica_timeout_ms=20))
        try:
            plain = ingestor_for(settings, EventStore(client))
            declare = event("im.incident.declare", imincidentid=INC)
            await plain.accept(plain.check([declare], batch=False), ADMIN)
            checked = [ingestor.check(r, batch=False) for r in notes]
            before = script_calls(redis_client)
            answers = await asyncio.gather(
                *(ingestor.accept(events, ADMIN) for events in checked), return_exceptions=True
            )
            return answers, script_calls(redis_client) - before
        finally:
            await client.aclose()

    answers, calls = asyncio.run(run())
    assert all(isinstance(a, StoreUnavailable) for a in answers), answers
    assert redis_client.zcard(keys.timeline(INC)) == 1 + len(notes)
    assert stored_incident(redis_client, INC)["version"] == 1 + len(notes)
    assert calls <= 2, calls


def test_batches_spanning_incidents_interleave_with_groups_without_deadlock(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """Batches spanning two busy incidents, sent among requests for each, are all stored
    (they take the incidents' locks in order, groups take one each); no update is lost."""
    other = "INC-HOT-2"
    requests: list[list[dict[str, Any]]] = []
    for n in range(6):
        requests.append([on("im.incident.note", {"text": f"x{n}"})])
        requests.append([event("im.incident.note", {"text": f"y{n}"}, imincidentid=other)])
        if n % 2:
            requests.append(
                [
                    event("im.incident.note", {"text": f"yx{n}"}, imincidentid=other),
                    on("im.incident.note", {"text": f"xy{n}"}),
                ]
            )

    async def run() -> tuple[list[list[Accepted] | BaseException], int]:
        client = connect_async(redis_url_of(settings))
        ingestor = ingestor_for(settings, EventStore(client))
        try:
            for incident in (INC, other):
                declare = event("im.incident.declare", imincidentid=incident)
                await ingestor.accept(ingestor.check([declare], batch=False), ADMIN)
            checked = [ingestor.check(r, batch=True) for r in requests]
            before = script_calls(redis_client)
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(ingestor.accept(e, ADMIN) for e in checked), return_exceptions=True
                ),
                timeout=20,
            )
            return answers, script_calls(redis_client) - before
        finally:
            await client.aclose()

    answers, calls = asyncio.run(run())
    assert all(isinstance(a, list) and not any(r.duplicate for r in a) for a in answers), answers
    for incident in (INC, other):
        assert stored_incident(redis_client, incident)["version"] == 1 + 6 + 3
        assert redis_client.zcard(keys.timeline(incident)) == 1 + 6 + 3
    assert calls < len(requests) // 2, calls
