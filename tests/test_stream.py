"""``GET /v1/stream`` over real HTTP: Server-Sent Events of what the caller may see, redacted as
delivery redacts, filtered, resumable, with heartbeats; one reader per process; disconnects
free their subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette

from incidents.app import create_app
from incidents.settings import Settings
from incidents.store.events import EventStore
from incidents.store.keys import OUTBOX
from incidents.store.redis import connect_async
from incidents.stream.hub import End, Entry, StreamHub, StreamOptions
from tests.delivery_support import publish
from tests.support import (
    ADMIN_TOKEN,
    TEST_TLS,
    SharedServer,
    admin_client,
    assert_problem,
    create_principal,
    event,
    wait_for,
)

HEARTBEAT = 0.3


@dataclass
class Message:
    id: str | None = None
    event: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.data)
        return parsed


class Reader:
    """Messages of an open event stream, parsed as an EventSource client parses them."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> Message:
        found = Message()
        for line in self._lines:
            if line == "":
                if found.id or found.event or found.data or found.comments:
                    return found
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                found.comments.append(value)
            elif name == "id":
                found.id = value
            elif name == "event":
                found.event = value
            elif name == "data":
                found.data = value if not found.data else found.data + "\n" + value
        raise AssertionError("the stream ended")

    def events(self, count: int) -> list[Message]:
        """The next ``count`` events, skipping comments (heartbeats)."""
        out: list[Message] = []
        while len(out) < count:
            message = self.next()
            if message.event is not None:
                out.append(message)
        return out


@dataclass
class Gateway:
    app: Starlette
    url: str

    @property
    def hub(self) -> StreamHub:
        hub: StreamHub = self.app.state.stream_hub
        return hub

    @contextmanager
    def stream(
        self, token: str = ADMIN_TOKEN, headers: dict[str, str] | None = None, **params: Any
    ) -> Iterator[Reader]:
        with (
            httpx.Client(
                verify=TEST_TLS,
                base_url=self.url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ) as c,
            c.stream("GET", "/v1/stream", params=params, headers=headers) as response,
        ):
            assert response.status_code == 200, response.read()
            yield Reader(response)


@pytest.fixture
def gw(settings: Settings, shared_server: SharedServer) -> Iterator[Gateway]:
    """The gateway app (with a short heartbeat), served over HTTP, and the app itself."""
    app = create_app(settings)
    app.state.stream_options = StreamOptions(heartbeat=HEARTBEAT)
    with shared_server.mounted(app) as url:
        yield Gateway(app, url)


@pytest.fixture
def admin(gw: Gateway) -> Iterator[httpx.Client]:
    with admin_client(gw.url, timeout=10) as c:
        yield c


def declare(incident: str, **attrs: Any) -> dict[str, Any]:
    return event("im.incident.declare", imincidentid=incident, **attrs)


def test_each_event_is_a_message_with_sequence_type_and_the_cloudevent(
    gw: Gateway, admin: httpx.Client
) -> None:
    """Events accepted while a stream is open arrive in order, each with ``id`` the gateway
    sequence, ``event`` its type and ``data`` the structured CloudEvent."""
    with gw.stream() as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-store"
        sent = [declare("INC-7"), event("im.incident.note", imincidentid="INC-7")]
        accepted = publish(admin, *sent)
        got = stream.events(2)
    assert [m.id for m in got] == [str(a["sequence"]) for a in accepted]
    assert [m.event for m in got] == ["im.incident.declare", "im.incident.note"]
    for message, original in zip(got, sent, strict=True):
        body = message.body
        assert body["specversion"] == "1.0"
        assert (body["id"], body["source"], body["type"]) == (
            original["id"],
            original["source"],
            original["type"],
        )
        assert body["data"] == original["data"]
        assert body["imincidentid"] == "INC-7"


def test_types_and_incident_select_what_is_sent(gw: Gateway, admin: httpx.Client) -> None:
    """``types`` (exact names and prefixes ending in *) and ``incident`` leave out every
    other event."""
    publish(admin, declare("INC-1"), declare("INC-2"))
    with (
        gw.stream(types="im.incident.note, im.alert.*") as by_type,
        gw.stream(incident="INC-2") as by_incident,
    ):
        publish(
            admin,
            event("im.incident.note", imincidentid="INC-1"),
            event("im.incident.ack", imincidentid="INC-2"),
            event("im.alert.trigger"),
            event("im.incident.note", imincidentid="INC-2"),
        )
        typed = by_type.events(3)
        for_incident = by_incident.events(2)
    assert [(m.event, m.body.get("imincidentid")) for m in typed] == [
        ("im.incident.note", "INC-1"),
        ("im.alert.trigger", None),
        ("im.incident.note", "INC-2"),
    ]
    assert [m.event for m in for_incident] == ["im.incident.ack", "im.incident.note"]
    assert all(m.body["imincidentid"] == "INC-2" for m in for_incident)


def test_last_event_id_resumes_without_gap_or_repeat(gw: Gateway, admin: httpx.Client) -> None:
    """A stream opened with ``Last-Event-ID`` (or ``?last_event_id=``) sends every event after
    that sequence once, then the live ones, with no gap and no repeat."""
    before = publish(admin, *(declare(f"INC-{n}") for n in range(1, 6)))
    seqs = [a["sequence"] for a in before]
    with (
        gw.stream(headers={"Last-Event-ID": str(seqs[1])}) as by_header,
        gw.stream(last_event_id=str(seqs[3])) as by_query,
    ):
        after = publish(admin, *(declare(f"INC-{n}") for n in range(6, 9)))
        everything = seqs + [a["sequence"] for a in after]
        header_ids = [int(m.id or 0) for m in by_header.events(len(everything) - 2)]
        query_ids = [int(m.id or 0) for m in by_query.events(len(everything) - 4)]
        publish(admin, declare("INC-9"))
        assert int(by_header.events(1)[0].id or 0) == everything[-1] + 1
    assert header_ids == everything[2:]
    assert query_ids == everything[4:]


def test_a_resume_point_no_longer_retained_says_events_were_missed(
    gw: Gateway, admin: httpx.Client, redis_client: redis.Redis
) -> None:
    """Resuming from before the oldest retained event first sends ``stream.missed`` (its id is
    where the stream resumes), then every retained event; a Last-Event-ID ahead of the
    gateway's sequence is told the same."""
    seqs = [a["sequence"] for a in publish(admin, *(declare(f"INC-{n}") for n in range(1, 7)))]
    redis_client.xtrim(OUTBOX, maxlen=3, approximate=False)
    with gw.stream(headers={"Last-Event-ID": str(seqs[0])}) as stream:
        missed, *rest = stream.events(4)
    assert missed.event == "stream.missed"
    assert missed.id == str(seqs[2])
    assert missed.body["last_event_id"] == seqs[0] and missed.body["resumes_after"] == seqs[2]
    assert [int(m.id or 0) for m in rest] == seqs[3:]
    with gw.stream(headers={"Last-Event-ID": str(seqs[-1] + 100)}) as ahead:
        first = ahead.events(1)[0]
        assert (first.event, first.id) == ("stream.missed", str(seqs[-1]))
        publish(admin, declare("INC-9"))
        assert int(ahead.events(1)[0].id or 0) == seqs[-1] + 1


def test_a_cleared_subscriber_never_sees_a_field_above_its_clearance(
    gw: Gateway, admin: httpx.Client
) -> None:
    """An internal-clearance subscriber gets an event with its confidential and restricted
    fields removed and ``imredacted`` naming them, and never an event of another tenant that
    is restricted to it."""
    reader = create_principal(
        admin, name="reader", roles=["subscriber"], tenant="acme", clearance="internal"
    )
    producer = create_principal(admin, name="acme-prod", tenant="acme", clearance="restricted")
    other = create_principal(
        admin, name="globex-prod", tenant="globex", clearance="restricted", restricted=True
    )
    secret = dict(
        title="Checkout down",
        severity="SEV2",
        service="checkout",
        summary="card numbers in logs",
        customer_impact="Initech",
    )
    with gw.stream(token=reader["token"]) as stream:
        with httpx.Client(
            verify=TEST_TLS, base_url=gw.url, headers={"Authorization": f"Bearer {other['token']}"}
        ) as g:
            publish(
                g,
                event(
                    "im.incident.declare",
                    dict(secret, title="Globex secret"),
                    imvisibility="restricted",
                    imdataclass="restricted",
                ),
            )
        with httpx.Client(
            verify=TEST_TLS,
            base_url=gw.url,
            headers={"Authorization": f"Bearer {producer['token']}"},
        ) as p:
            publish(
                p,
                event("im.incident.declare", secret, imvisibility="internal"),
                event(
                    "im.incident.declare",
                    dict(secret, title="Too confidential"),
                    imdataclass="confidential",
                ),
                event("im.incident.declare", dict(title="Marker", severity="SEV4", service="x")),
            )
        got = stream.events(2)
        raw = b"".join(m.data.encode() for m in got)
    first, marker = got
    assert first.body["data"] == {
        "title": "Checkout down",
        "severity": "SEV2",
        "service": "checkout",
    }
    assert sorted(str(first.body["imredacted"]).split(",")) == [
        "/customer_impact",
        "/summary",
    ]
    assert marker.body["data"]["title"] == "Marker"
    for leaked in (b"card numbers", b"Initech", b"Globex", b"Too confidential"):
        assert leaked not in raw


def test_a_heartbeat_comment_is_sent_while_nothing_happens(gw: Gateway) -> None:
    """With nothing to send, the stream carries ``: heartbeat`` at the configured interval."""
    with gw.stream() as stream:
        beats = [stream.next() for _ in range(2)]
    assert all(m.comments == ["heartbeat"] and m.event is None for m in beats)


@pytest.mark.parametrize(
    ("params", "headers", "pointer"),
    [
        ({"types": "im.incident.note,,"}, {}, "/query/types"),
        ({"types": "im incident"}, {}, "/query/types"),
        ({"incident": ""}, {}, "/query/incident"),
        ({}, {"Last-Event-ID": "abc"}, "/headers/Last-Event-ID"),
        ({"last_event_id": "-1"}, {}, "/query/last_event_id"),
    ],
)
def test_bad_parameters_are_a_problem_naming_them(
    admin: httpx.Client, params: dict[str, str], headers: dict[str, str], pointer: str
) -> None:
    """A malformed ``types``, ``incident`` or ``Last-Event-ID`` is a 400 problem that points at
    the parameter, before any stream opens."""
    r = admin.get("/v1/stream", params=params, headers=headers)
    body = assert_problem(r, 400, "invalid-request")
    assert [e["pointer"] for e in body["errors"]] == [pointer]


def test_a_stream_needs_a_token(gw: Gateway) -> None:
    """Without a token the stream is a 401 problem."""
    r = httpx.get(gw.url + "/v1/stream", timeout=10)
    assert_problem(r, 401, "unauthorized")


def test_closing_streams_frees_their_subscribers_and_stops_the_reader(
    gw: Gateway, admin: httpx.Client
) -> None:
    """Open streams are subscribers of one reader; when their clients go away the process's
    subscriber count returns to 0 and the reader stops."""
    with gw.stream() as one, gw.stream() as two, gw.stream(types="im.alert.*"):
        assert gw.hub.subscriber_count == 3 and gw.hub.reading
        publish(admin, declare("INC-1"))
        assert one.events(1)[0].event == two.events(1)[0].event == "im.incident.declare"
    wait_for(lambda: gw.hub.subscriber_count == 0, 10, "every subscriber freed")
    wait_for(lambda: not gw.hub.reading, 10, "the reader stopped")


def test_a_subscriber_that_falls_behind_is_dropped_and_told(
    admin: httpx.Client, redis_url: str
) -> None:
    """A subscriber whose queue is full is ended with ``BEHIND`` and leaves the hub, while the
    others keep receiving."""

    async def run() -> tuple[list[Entry | End], list[int], int]:
        connection = connect_async(redis_url)
        hub = StreamHub(EventStore(connection), StreamOptions(queue_size=3, read_block=0.2))
        try:
            slow = await hub.subscribe(lambda stored: True)
            fast = await hub.subscribe(lambda stored: True)
            seen: list[int] = []
            for n in range(1, 6):  # one at a time: the fast one keeps up with each
                await asyncio.to_thread(publish, admin, declare(f"INC-{n}"))
                item = await asyncio.wait_for(fast.queue.get(), 10)
                assert not isinstance(item, End)
                seen.append(item.stored.sequence)
            slow_items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
            return slow_items, seen, hub.subscriber_count
        finally:
            await hub.close()
            await connection.aclose()

    slow_items, seen, count = asyncio.run(run())
    assert slow_items[-1] is End.BEHIND and len(slow_items) == 4
    assert seen == sorted(seen) and len(seen) == 5
    assert count == 1


def test_streamed_events_carry_the_incident_context(gw: Gateway, admin: httpx.Client) -> None:
    """An ack on the stream carries the incident's severity, status and service, stamped by
    the gateway, though the ack itself says none of them."""
    with gw.stream() as stream:
        publish(admin, declare("INC-CTX"), event("im.incident.ack", imincidentid="INC-CTX"))
        _, ack = stream.events(2)
    body = ack.body
    assert (body["imseverity"], body["imstatus"], body["imservice"]) == ("SEV2", "open", "checkout")
