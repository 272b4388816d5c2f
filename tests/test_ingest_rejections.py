"""Every way an event can be refused, and the precise problem+json it gets."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import httpx
import pytest
import redis

from tests.support import DROP, STRUCTURED, assert_problem, event, pointers, post

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("missing id", {"id": DROP}, "/id"),
    ("missing source", {"source": DROP}, "/source"),
    ("missing specversion", {"specversion": DROP}, "/specversion"),
    ("missing type", {"type": DROP}, "/type"),
    ("empty id", {"id": ""}, "/id"),
    ("empty source", {"source": ""}, "/source"),
    ("empty specversion", {"specversion": ""}, "/specversion"),
    ("empty type", {"type": ""}, "/type"),
    ("specversion 0.3", {"specversion": "0.3"}, "/specversion"),
    ("specversion 1.1", {"specversion": "1.1"}, "/specversion"),
    ("numeric specversion", {"specversion": 1.0}, "/specversion"),
    ("integer id", {"id": 123}, "/id"),
    ("null id", {"id": None}, "/id"),
    ("minute-only time", {"time": "2026-01-01T10:00Z"}, "/time"),
    ("offset hour out of range", {"time": "2026-01-01T10:00:00+25:00"}, "/time"),
    ("offset minute out of range", {"time": "2026-01-01T10:00:00+05:60"}, "/time"),
    ("offset without colon", {"time": "2026-01-01T10:00:00+0500"}, "/time"),
    ("impossible date", {"time": "2026-02-30T10:00:00Z"}, "/time"),
    ("time without zone", {"time": "2026-01-01T10:00:00"}, "/time"),
    ("time as number", {"time": 1767261600}, "/time"),
    ("empty subject", {"subject": ""}, "/subject"),
    ("empty dataschema", {"dataschema": ""}, "/dataschema"),
    ("dataschema not a URI", {"dataschema": "not a uri"}, "/dataschema"),
    ("empty datacontenttype", {"datacontenttype": ""}, "/datacontenttype"),
    ("datacontenttype not a media type", {"datacontenttype": "json"}, "/datacontenttype"),
    ("datacontenttype half a media type", {"datacontenttype": "application/"}, "/datacontenttype"),
    ("source not a URI reference", {"source": "has spaces in it"}, "/source"),
    ("upper-case attribute name", {"Severity": "x"}, "/Severity"),
    ("dash in attribute name", {"my-ext": "x"}, "/my-ext"),
    ("underscore in attribute name", {"my_ext": "x"}, "/my_ext"),
    ("attribute name over 20 characters", {"a" * 21: "x"}, "/" + "a" * 21),
    ("both data and data_base64", {"data_base64": "aGk="}, "/data_base64"),
    ("object extension value", {"myext": {"a": 1}}, "/myext"),
    ("array extension value", {"myext": [1, 2]}, "/myext"),
    ("non-integer extension value", {"myext": 1.5}, "/myext"),
    ("integer extension written 10.0", {"myext": 10.0}, "/myext"),
    (
        "datacontenttype ending in CRLF",
        {"datacontenttype": "application/json\r\n"},
        "/datacontenttype",
    ),
    ("datacontenttype ending in LF", {"datacontenttype": "application/json\n"}, "/datacontenttype"),
    (
        "CRLF in a quoted parameter",
        {"datacontenttype": 'text/plain; a="x\r\ny"'},
        "/datacontenttype",
    ),
    ("newline in subject", {"subject": "a\nb"}, "/subject"),
    ("bell in id", {"id": "a\x07b"}, "/id"),
    ("C1 control in actor", {"imactor": "x\x85y"}, "/imactor"),
    ("DEL in an extension", {"myext": "a\x7fb"}, "/myext"),
    ("noncharacter in subject", {"subject": "a\ufffe"}, "/subject"),
    ("extension over 32 bits", {"myext": 2**40}, "/myext"),
    ("unknown data class", {"imdataclass": "secret"}, "/imdataclass"),
    ("unknown visibility", {"imvisibility": "everyone"}, "/imvisibility"),
    (
        "conflicting classifications",
        {"imdataclass": "public", "dataclassification": "restricted"},
        "/dataclassification",
    ),
    ("gateway-owned tenant", {"imtenant": "other"}, "/imtenant"),
    ("empty incident id", {"imincidentid": ""}, "/imincidentid"),
]


@pytest.mark.parametrize(("case", "change", "where"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_cloudevent_is_400_with_a_pointer(
    client: httpx.Client, case: str, change: dict[str, Any], where: str
) -> None:
    """An event that breaks a CloudEvents rule is refused with a pointer to the culprit."""
    r = post(client, event("im.incident.declare", **change))
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert where in pointers(body), body


def test_incident_events_other_than_declare_need_an_incident_id(client: httpx.Client) -> None:
    """A note without imincidentid is refused, naming the missing extension."""
    body = assert_problem(
        post(client, event("im.incident.note", imincidentid=DROP)), 400, "invalid-cloudevent"
    )
    assert "/imincidentid" in pointers(body)


def test_alert_events_need_a_correlation_key(client: httpx.Client) -> None:
    """An alert without imcorrelationkey is refused, naming the missing extension."""
    body = assert_problem(
        post(client, event("im.alert.trigger", imcorrelationkey=DROP)), 400, "invalid-cloudevent"
    )
    assert "/imcorrelationkey" in pointers(body)


def test_invalid_base64_data_is_refused(client: httpx.Client) -> None:
    """data_base64 that is not base64 is a 400."""
    ev = event("im.incident.declare", data=DROP, data_base64="not base64!")
    body = assert_problem(post(client, ev), 400, "invalid-cloudevent")
    assert "/data_base64" in pointers(body)


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"id": "1",}', b"[1, 2", b'{"a": NaN}'])
def test_malformed_json_is_400(client: httpx.Client, body: bytes) -> None:
    """A body that is not JSON gets a malformed-json problem, never a 500."""
    assert_problem(post(client, body), 400, "malformed-json")


@pytest.mark.parametrize("body", [[], "a string", 42, None])
def test_structured_body_that_is_not_an_object_is_400(client: httpx.Client, body: Any) -> None:
    """A structured-mode body must be one JSON object."""
    assert_problem(post(client, json.dumps(body)), 400, "invalid-cloudevent")


def test_batch_is_rejected_whole_naming_each_bad_index(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """One bad event rejects the whole batch; errors point at /<index>/<attribute>."""
    batch = [event(), event(id=""), event(), event(specversion="2.0", type=DROP)]
    r = post(client, batch, {"Content-Type": "application/cloudevents-batch+json"})
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert set(pointers(body)) == {"/1/id", "/3/specversion", "/3/type"}
    assert redis_client.xlen("incidents:outbox") == 0


def test_batch_that_is_not_an_array_is_400(client: httpx.Client) -> None:
    """A batch body must be a JSON array."""
    r = post(client, event(), {"Content-Type": "application/cloudevents-batch+json"})
    assert_problem(r, 400, "malformed-json")


def test_batch_data_errors_name_the_index(client: httpx.Client) -> None:
    """A schema failure inside a batch is a 422 pointing into that event's data."""
    batch = [event(), event(data={"title": "t", "service": "s"})]
    r = post(client, batch, {"Content-Type": "application/cloudevents-batch+json"})
    body = assert_problem(r, 422, "schema-validation")
    assert pointers(body) == ["/1/data/severity"]


def test_data_failing_its_schema_is_422_with_one_pointer_per_error(client: httpx.Client) -> None:
    """Declare data without title and with a bad severity lists both problems."""
    r = post(client, event(data={"severity": "SEV9", "service": "checkout"}))
    body = assert_problem(r, 422, "schema-validation")
    assert sorted(pointers(body)) == ["/data/severity", "/data/title"]


def test_state_change_needs_status_or_severity(client: httpx.Client) -> None:
    """A state change with only a reason is refused."""
    r = post(client, event("im.incident.state_change", {"reason": "why not"}))
    body = assert_problem(r, 422, "schema-validation")
    assert "status" in json.dumps(body["errors"]) and "severity" in json.dumps(body["errors"])


def test_unknown_event_type_is_422(client: httpx.Client) -> None:
    """A type with no schema and no policy allowing it is refused."""
    body = assert_problem(post(client, event("com.example.unknown")), 422, "unknown-event-type")
    assert pointers(body) == ["/type"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/cloudevents+xml"},
        {},
    ],
)
def test_unsupported_content_type_is_415(client: httpx.Client, headers: dict[str, str]) -> None:
    """Without a CloudEvents content type or ce- headers, the request is 415."""
    r = client.post("/v1/events", content=json.dumps(event()), headers=headers)
    assert_problem(r, 415, "unsupported-media-type")


def test_binary_mode_with_non_json_data_for_a_schema_type_is_415(client: httpx.Client) -> None:
    """A known type whose data is not JSON cannot be checked against its schema: 415."""
    r = client.post(
        "/v1/events",
        content=b"<xml/>",
        headers={
            "Content-Type": "application/xml",
            "ce-specversion": "1.0",
            "ce-id": "x1",
            "ce-source": "/t",
            "ce-type": "im.incident.declare",
        },
    )
    assert_problem(r, 415, "unsupported-media-type")


def binary_headers(**extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "b1",
        "ce-source": "/t",
        "ce-type": "im.incident.note",
        "ce-imincidentid": "INC-1",
        **extra,
    }


def test_binary_header_that_is_not_utf8_after_decoding_is_400(client: httpx.Client) -> None:
    """%FF decodes to a byte that is not UTF-8: the header is refused."""
    r = client.post(
        "/v1/events",
        content=b'{"text": "x"}',
        headers=binary_headers(**{"ce-subject": "bad%FFbyte"}),
    )
    body = assert_problem(r, 400, "invalid-header")
    assert "ce-subject" in body["detail"]


def test_binary_mode_missing_required_headers_is_400(client: httpx.Client) -> None:
    """Binary mode without ce-id names /id."""
    headers = binary_headers()
    del headers["ce-id"]
    body = assert_problem(
        client.post("/v1/events", content=b'{"text": "x"}', headers=headers),
        400,
        "invalid-cloudevent",
    )
    assert "/id" in pointers(body)


def test_binary_mode_malformed_json_body_is_400(client: httpx.Client) -> None:
    """Binary mode with a JSON content type and a broken body is malformed-json."""
    r = client.post("/v1/events", content=b'{"text": ', headers=binary_headers())
    assert_problem(r, 400, "malformed-json")


def test_binary_mode_bad_spec_version_header_is_400(client: httpx.Client) -> None:
    """ce-specversion other than 1.0 is refused in binary mode too."""
    r = client.post(
        "/v1/events", content=b'{"text": "x"}', headers=binary_headers(**{"ce-specversion": "0.3"})
    )
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert "/specversion" in pointers(body)


def test_body_over_the_limit_is_413_by_content_length(client: httpx.Client) -> None:
    """A declared Content-Length over INCIDENTS_MAX_BODY_BYTES is refused at once."""
    big = json.dumps(event(data={"title": "x" * 2_000_000, "severity": "SEV1", "service": "s"}))
    body = assert_problem(post(client, big), 413, "payload-too-large")
    assert body["limit"] == 1024 * 1024


def test_chunked_body_over_the_limit_is_413_while_streaming(gateway: str) -> None:
    """A chunked body with no Content-Length is cut off once it passes the limit."""
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer test-admin-token-0123456789\r\n"
            b"Content-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 65536
        sent = 0
        answer = b""
        sock.settimeout(0.2)
        # Keep sending until the server answers; it must do so after ~1 MiB, not at the end.
        while sent < 8 * 1024 * 1024 and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except OSError:
                break
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
        sock.settimeout(5)
        try:
            while b"\r\n\r\n" not in answer:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 4 * 1024 * 1024


def test_no_token_is_401_with_a_challenge(anon: httpx.Client) -> None:
    """Posting without a token is 401 with WWW-Authenticate."""
    r = anon.post("/v1/events", content=json.dumps(event()), headers=STRUCTURED)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_token_is_401(anon: httpx.Client) -> None:
    """A token that is not known is 401."""
    r = anon.post(
        "/v1/events",
        content=json.dumps(event()),
        headers={**STRUCTURED, "Authorization": "Bearer nope"},
    )
    assert_problem(r, 401, "unauthorized")


def test_unknown_route_and_method_are_problems(client: httpx.Client) -> None:
    """404 and 405 from routing are problem+json too."""
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    assert_problem(client.delete("/v1/events"), 405, "method-not-allowed")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/subscriptions", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/subscriptions/some-id", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("POST", "/v1/principals/some-id", {"GET", "HEAD", "DELETE"}),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    client: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    """A 405 names in Allow every method the path serves, across all its routes."""
    r = client.request(method, path)
    assert_problem(r, 405, "method-not-allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed


def test_missing_event_is_404(client: httpx.Client) -> None:
    """Reading an id that was never stored is a 404."""
    assert_problem(client.get("/v1/events/never-sent"), 404, "not-found")
