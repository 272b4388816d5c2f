"""Incident events through POST /v1/events, and the incident read API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis

from tests.support import TEST_TLS, event

STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def post(client: httpx.Client, body: Any, headers: dict[str, str] = STRUCTURED) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps(body), headers=headers)


def declare(client: httpx.Client, **data: Any) -> str:
    body = {"title": "Checkout down", "severity": "SEV2", "service": "checkout", **data}
    r = post(client, event("im.incident.declare", body, time="2024-05-01T12:00:00Z"))
    assert r.status_code == 202, r.text
    incident: str = r.json()["accepted"][0]["incident"]
    return incident


def send(
    client: httpx.Client, incident: str, type_: str, data: Any = None, **attrs: Any
) -> httpx.Response:
    return post(client, event(type_, data, imincidentid=incident, **attrs))


def test_declared_incident_is_readable(client: httpx.Client) -> None:
    """A declare materializes an incident: open, version 1, severity canonical."""
    inc = declare(client, severity="p1", labels={"team": "payments"})
    body = client.get(f"/v1/incidents/{inc}").json()
    assert body["id"] == inc and body["status"] == "open" and body["version"] == 1
    assert body["severity"] == "SEV1" and body["labels"] == {"team": "payments"}
    assert body["roles"] == {"commander": None, "comms": None, "scribe": None}


def test_stored_declare_carries_the_canonical_severity(client: httpx.Client) -> None:
    """Severity aliases are stored (and fanned out) as SEV1..SEV4."""
    ev = event("im.incident.declare", {"title": "t", "severity": "sev-3", "service": "s"})
    post(client, ev)
    assert client.get(f"/v1/events/{ev['id']}").json()["event"]["data"]["severity"] == "SEV3"


def test_lifecycle_events_move_the_incident_and_expose_metrics(client: httpx.Client) -> None:
    """ack, role_assign, mitigate, resolve and close apply in order; metrics are seconds."""
    inc = declare(client)
    steps = [
        ("im.incident.ack", {}, "2024-05-01T12:01:00Z"),
        ("im.incident.role_assign", {"role": "commander", "assignee": "alice"}, None),
        ("im.incident.mitigate", {"summary": "rolled back"}, "2024-05-01T12:10:00Z"),
        ("im.incident.resolve", {}, "2024-05-01T12:30:00Z"),
        ("im.incident.close", {}, "2024-05-02T09:00:00Z"),
    ]
    for type_, data, time in steps:
        extra = {"time": time} if time else {}
        assert send(client, inc, type_, data, **extra).status_code == 202
    body = client.get(f"/v1/incidents/{inc}").json()
    assert body["status"] == "closed" and body["version"] == 6
    assert body["roles"]["commander"] == "alice"
    assert body["metrics"] == {
        "time_to_acknowledge": 60.0,
        "time_to_mitigate": 600.0,
        "time_to_resolve": 1800.0,
    }


def test_illegal_move_is_409_listing_allowed_moves_and_stores_nothing(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Closing an open incident is refused with the allowed moves; no event is stored."""
    inc = declare(client)
    before = redis_client.xlen("incidents:outbox")
    ev = event("im.incident.close", {}, imincidentid=inc)
    r = post(client, ev)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:incidents:problem:illegal-transition"
    assert problem["allowed"] == ["mitigated", "resolved"] and problem["status"] == 409
    assert problem["incident_status"] == "open"
    assert redis_client.xlen("incidents:outbox") == before
    assert client.get(f"/v1/events/{ev['id']}").status_code == 404
    assert client.get(f"/v1/incidents/{inc}").json()["version"] == 1


def test_a_batch_with_one_illegal_move_stores_none_of_it(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """Events of one call apply in order; if one is illegal the whole call stores nothing."""
    inc = declare(client)
    batch = [
        event("im.incident.mitigate", {}, imincidentid=inc),
        event("im.incident.resolve", {}, imincidentid=inc),
        event("im.incident.mitigate", {}, imincidentid=inc),
    ]
    assert post(client, batch, BATCH).status_code == 409
    assert client.get(f"/v1/incidents/{inc}").json()["status"] == "open"
    assert client.get(f"/v1/incidents/{inc}").json()["version"] == 1
    assert post(client, batch[:2], BATCH).status_code == 202
    assert client.get(f"/v1/incidents/{inc}").json()["status"] == "resolved"


def test_declare_and_follow_ups_in_one_batch_apply_in_order(client: httpx.Client) -> None:
    """A batch can declare an incident and act on it; versions chain within the call."""
    batch = [
        event("im.incident.declare", imincidentid="OPS-7"),
        event("im.incident.note", {"text": "looking"}, imincidentid="OPS-7"),
        event("im.incident.mitigate", {}, imincidentid="OPS-7"),
    ]
    assert post(client, batch, BATCH).status_code == 202
    body = client.get("/v1/incidents/OPS-7").json()
    assert (body["status"], body["version"]) == ("mitigated", 3)


def test_event_for_an_undeclared_incident_is_409(client: httpx.Client) -> None:
    """A note for an incident that was never declared is refused."""
    r = send(client, "INC-404", "im.incident.note", {"text": "hello"})
    assert r.status_code == 409 and "declare" in r.json()["detail"]


def test_redeclaring_an_incident_id_is_409(client: httpx.Client) -> None:
    """A declare naming an existing incident (from another event) is refused."""
    post(client, event("im.incident.declare", imincidentid="SEC-1"))
    assert post(client, event("im.incident.declare", imincidentid="SEC-1")).status_code == 409


def test_duplicate_event_is_not_applied_twice(client: httpx.Client) -> None:
    """Repeating (source, id) answers 200 and leaves the incident's version alone."""
    inc = declare(client)
    ev = event("im.incident.note", {"text": "once"}, imincidentid=inc)
    assert post(client, ev).status_code == 202
    assert post(client, ev).status_code == 200
    assert client.get(f"/v1/incidents/{inc}").json()["version"] == 2


def test_parallel_events_for_one_incident_never_lose_an_update(client: httpx.Client) -> None:
    """Many threads posting to one incident at once: every event is applied exactly once."""
    inc = declare(client)
    threads, per_thread = 8, 5

    def worker(n: int) -> list[int]:
        with httpx.Client(
            verify=TEST_TLS, base_url=str(client.base_url), headers=client.headers
        ) as c:
            return [
                send(c, inc, "im.incident.note", {"text": f"{n}-{i}"}).status_code
                for i in range(per_thread)
            ]

    with ThreadPoolExecutor(threads) as pool:
        codes = [code for result in pool.map(worker, range(threads)) for code in result]
    assert codes == [202] * threads * per_thread
    assert client.get(f"/v1/incidents/{inc}").json()["version"] == 1 + threads * per_thread
    timeline = client.get(f"/v1/incidents/{inc}/timeline").json()["timeline"]
    assert len(timeline) == 1 + threads * per_thread
    seqs = [t["sequence"] for t in timeline]
    assert seqs == sorted(seqs)


def test_parallel_state_changes_apply_in_a_legal_order(client: httpx.Client) -> None:
    """Racing mitigate/reopen pairs always leave a status the table allows, with all counted."""
    inc = declare(client)

    def flip(n: int) -> tuple[int, int]:
        with httpx.Client(
            verify=TEST_TLS, base_url=str(client.base_url), headers=client.headers
        ) as c:
            a = send(c, inc, "im.incident.state_change", {"status": "mitigated", "reason": str(n)})
            b = send(c, inc, "im.incident.state_change", {"status": "open", "reason": str(n)})
            return a.status_code, b.status_code

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(flip, range(6)))
    applied = sum(code == 202 for pair in results for code in pair)
    assert all(code in (202, 409) for pair in results for code in pair)
    assert client.get(f"/v1/incidents/{inc}").json()["version"] == 1 + applied


def test_list_filters_by_status_severity_and_service(client: httpx.Client) -> None:
    """GET /v1/incidents filters on status, severity (aliases accepted) and service."""
    a = declare(client, severity="SEV1", service="api")
    b = declare(client, severity="SEV3", service="web")
    send(client, b, "im.incident.mitigate", {})

    def ids(**params: str) -> list[str]:
        r = client.get("/v1/incidents", params=params)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["incidents"]]

    assert set(ids()) == {a, b}
    assert ids(status="mitigated") == [b]
    assert ids(severity="p1") == [a]
    assert ids(service="web") == [b]
    assert ids(service="web", status="open") == []
    assert len(ids(limit="1")) == 1


def test_list_rejects_unknown_filter_values(client: httpx.Client) -> None:
    """A bad status or severity filter is a 400 naming the query parameter."""
    r = client.get("/v1/incidents", params={"status": "burning"})
    assert r.status_code == 400 and r.json()["errors"][0]["pointer"] == "/query/status"
    r = client.get("/v1/incidents", params={"severity": "SEV9"})
    assert r.status_code == 400 and r.json()["errors"][0]["pointer"] == "/query/severity"
    assert client.get("/v1/incidents", params={"limit": "-1"}).status_code == 400


def test_bad_severity_spelling_status_names_the_severity_parameter(client: httpx.Client) -> None:
    """A severity filter whose value reads "status" is a 400 pointing at severity, not status."""
    r = client.get("/v1/incidents", params={"severity": "status"})
    assert r.status_code == 400 and r.json()["errors"][0]["pointer"] == "/query/severity"


def test_timeline_lists_entries_in_order_with_titles(client: httpx.Client) -> None:
    """The timeline reads as a story: declared, note, role assigned, each with its actor."""
    inc = declare(client)
    send(client, inc, "im.incident.note", {"text": "db is slow", "title": "Finding"}, imactor="bob")
    send(client, inc, "im.incident.role_assign", {"role": "scribe", "assignee": "carol"})
    timeline = client.get(f"/v1/incidents/{inc}/timeline").json()["timeline"]
    assert [t["type"] for t in timeline] == [
        "im.incident.declare",
        "im.incident.note",
        "im.incident.role_assign",
    ]
    assert timeline[1]["title"] == "Finding" and timeline[1]["body"] == "db is slow"
    assert timeline[1]["actor"] == "bob" and timeline[2]["title"] == "scribe assigned to carol"
    later = client.get(f"/v1/incidents/{inc}/timeline", params={"after": timeline[0]["sequence"]})
    assert len(later.json()["timeline"]) == 2


def test_unknown_incident_is_404(client: httpx.Client) -> None:
    """Reading an incident or timeline that does not exist is 404 problem+json."""
    assert client.get("/v1/incidents/INC-999").status_code == 404
    assert client.get("/v1/incidents/INC-999/timeline").status_code == 404


def test_reads_need_a_token(anon: httpx.Client) -> None:
    """The incident API is for authenticated principals only."""
    assert anon.get("/v1/incidents").status_code == 401


def page_through(client: httpx.Client, path: str, key: str, **params: str) -> list[list[str]]:
    """Every page of a listing, following next_cursor until it is null."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        asked = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, params=asked)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([i["id"] if "id" in i else i["key"] for i in body[key]])
        assert body["count"] == len(pages[-1])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "next_cursor never became null"


def test_list_pages_with_a_cursor(client: httpx.Client) -> None:
    """Following next_cursor walks every incident once, newest first, in limit-sized pages,
    even when they share one declaration time; next_cursor is null after the last page."""
    declared = [declare(client, service="paged") for _ in range(5)]
    declare(client, service="elsewhere")
    pages = page_through(client, "/v1/incidents", "incidents", service="paged", limit="2")
    walked = [i for page in pages for i in page]
    assert sorted(walked) == sorted(declared) and len(set(walked)) == 5
    assert [len(p) for p in pages[:2]] == [2, 2]
    whole = client.get("/v1/incidents", params={"service": "paged"}).json()
    assert [i["id"] for i in whole["incidents"]] == walked and whole["next_cursor"] is None


def test_list_still_takes_an_offset(client: httpx.Client) -> None:
    """offset (from before cursors) still skips that many matching incidents."""
    for _ in range(3):
        declare(client, service="offset")
    everything = [
        i["id"]
        for i in client.get("/v1/incidents", params={"service": "offset"}).json()["incidents"]
    ]
    r = client.get("/v1/incidents", params={"service": "offset", "offset": "1", "limit": "1"})
    assert [i["id"] for i in r.json()["incidents"]] == everything[1:2]


def test_a_page_reads_a_bounded_stretch_of_the_index(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """However long the index, one request reads at most a bounded stretch of it: past that
    it answers what it found so far with a next_cursor, and the walk still reaches the end."""
    kept = declare(client, service="needle")
    # Older index entries without documents (e.g. left behind), more than one request reads.
    redis_client.zadd("incidents:incident-index", {f"INC-gone-{n}": n for n in range(1, 4500)})
    first = client.get("/v1/incidents", params={"service": "needle"}).json()
    assert [i["id"] for i in first["incidents"]] == [kept] and first["next_cursor"] is not None
    pages = page_through(client, "/v1/incidents", "incidents", service="absent")
    assert all(page == [] for page in pages) and 2 <= len(pages) <= 4


def test_a_cursor_that_is_not_one_is_400(client: httpx.Client) -> None:
    """A cursor the gateway did not hand out is a 400 naming the cursor parameter."""
    for bad in ("nonsense", "WzEsbnVsbCwtMV0", "e30"):
        r = client.get("/v1/incidents", params={"cursor": bad})
        assert r.status_code == 400, bad
        assert r.json()["errors"][0]["pointer"] == "/query/cursor"
