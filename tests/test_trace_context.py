"""Trace context end to end (the CloudEvents distributed-tracing extension, W3C Trace
Context): what a producer sends is kept with the event, and every delivery carries a
traceparent of its own in the same trace, to webhooks and connectors alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from incidents.ingest.envelope import clearly_valid
from incidents.model.cloudevent import CloudEvent
from incidents.settings import Settings
from incidents.store.secret_box import new_key
from incidents.tracing.context import TraceContext, from_headers, kept, valid_tracestate
from tests.delivery_support import Receiver, Workers, subscribe
from tests.support import STRUCTURED, event, post

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Connector settings hold secrets, stored encrypted: the gateway and workers need a key."""
    return settings.replace(secret_key=new_key())


def parsed(traceparent: str) -> TraceContext:
    found = TraceContext.parse(traceparent)
    assert found is not None, traceparent
    return found


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 is 55 chars
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # 31 hex digits
    ],
)
def test_an_invalid_traceparent_is_no_context(bad: str) -> None:
    """A traceparent that breaks the W3C format gives no context (it is ignored)."""
    assert TraceContext.parse(bad) is None


def test_a_later_version_is_read_as_version_00_and_a_child_keeps_the_trace() -> None:
    """A later version's extra fields are skipped; a child has the trace id, a new span id
    and the flags and state of its parent."""
    later = parsed(f"cc-{TRACE}-00f067aa0ba902b7-09-whatever")
    assert later.traceparent == PARENT
    child = parsed(PARENT).child()
    assert child.trace_id == TRACE and child.span_id != "00f067aa0ba902b7" and child.sampled


def test_tracestate_is_kept_when_valid_and_dropped_when_not() -> None:
    """A valid tracestate is kept (blank members removed); an invalid one is dropped while
    its traceparent stays."""
    assert valid_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,") == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert valid_tracestate("rojo=1,rojo=2") == ""  # a key twice
    assert valid_tracestate("Not A Key=1") == ""
    assert valid_tracestate(",".join(f"k{i}=v" for i in range(33))) == ""
    found = TraceContext.parse(PARENT, "=nope")
    assert found is not None and found.state == ""


def test_headers_give_one_context_and_two_traceparents_give_none() -> None:
    """Several tracestate headers are one list; two traceparent headers are invalid."""
    one = from_headers([(b"TraceParent", PARENT.encode()), (b"tracestate", b"a=1"),
                        (b"tracestate", b"b=2")])  # fmt: skip
    assert one is not None and one.state == "a=1,b=2"
    assert (
        from_headers([(b"traceparent", PARENT.encode()), (b"traceparent", OTHER.encode())]) is None
    )


def test_the_event_s_own_context_wins_and_an_invalid_one_is_dropped() -> None:
    """An event keeps its own valid traceparent; an invalid one is replaced by the request's,
    or removed when the request has none; with neither, the event is unchanged."""
    request = parsed(OTHER)
    own = CloudEvent.from_dict(event(traceparent=PARENT, tracestate="a=1"))
    assert kept(own, request).get("traceparent") == PARENT
    assert kept(own, request).get("tracestate") == "a=1"
    bad = CloudEvent.from_dict(event(traceparent="00-nope", tracestate="a=1"))
    assert kept(bad, request).get("traceparent") == OTHER
    assert kept(bad, request).get("tracestate") is None
    assert kept(bad, None).get("traceparent") is None and kept(bad, None).get("tracestate") is None
    plain = CloudEvent.from_dict(event())
    assert kept(plain, None) is plain


def test_an_event_with_trace_attributes_stays_on_the_fast_path() -> None:
    """traceparent and tracestate are ordinary extension attributes to the envelope rules:
    they cost a producer no full schema check and are not refused as unknown."""
    assert clearly_valid(event(traceparent=PARENT, tracestate="rojo=00f067aa0ba902b7"))


def stored(client: httpx.Client, sent: dict[str, Any]) -> dict[str, Any]:
    found = client.get(f"/v1/events/{sent['id']}", params={"source": sent["source"]})
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()["event"]
    assert body["id"] == sent["id"]
    return body


def delivered(workers: Workers, rx: Receiver, path: str, count: int = 1) -> list[Any]:
    workers.run_until(lambda: len(rx.at(path)) >= count, timeout=20)
    return rx.at(path)


def test_the_producer_s_header_is_kept_and_each_delivery_continues_its_trace(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A traceparent header on the request is kept with the event; the subscriber gets a
    traceparent header of the same trace with a span id of its own, the same in the delivered
    event's attribute, signed with the body (the signature verifies)."""
    subscribe(client, rx, "/structured")
    sent = event()
    headers = {**STRUCTURED, "traceparent": PARENT, "tracestate": "rojo=00f067aa0ba902b7"}
    assert post(client, sent, headers).status_code == 202
    kept_event = stored(client, sent)
    assert kept_event["traceparent"] == PARENT
    assert kept_event["tracestate"] == "rojo=00f067aa0ba902b7"
    [got] = delivered(workers, rx, "/structured")
    header = parsed(got.headers["traceparent"])
    assert header.trace_id == TRACE and header.span_id != "00f067aa0ba902b7" and header.sampled
    assert got.headers["tracestate"] == "rojo=00f067aa0ba902b7"
    assert got.event["traceparent"] == got.headers["traceparent"]
    assert got.verified


def test_binary_mode_carries_the_context_as_a_ce_header_too(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """In binary mode the delivery's traceparent is both the HTTP header and ce-traceparent;
    an event's own traceparent attribute wins over the request's header."""
    subscribe(client, rx, "/binary", config={"mode": "binary"})
    sent = event(traceparent=PARENT)
    assert post(client, sent, {**STRUCTURED, "traceparent": OTHER}).status_code == 202
    assert stored(client, sent)["traceparent"] == PARENT
    [got] = delivered(workers, rx, "/binary")
    assert got.headers["ce-traceparent"] == got.headers["traceparent"]
    assert parsed(got.headers["traceparent"]).trace_id == TRACE
    assert got.verified


def test_a_malformed_traceparent_is_ignored_and_the_delivery_starts_a_trace(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A malformed traceparent (attribute or header) is not an error: the event is accepted
    and stored without it, and its delivery carries a valid traceparent of a new trace."""
    subscribe(client, rx, "/fresh")
    sent = event(traceparent="00-not-a-trace-01")
    answer = post(client, sent, {**STRUCTURED, "traceparent": "garbage"})
    assert answer.status_code == 202, answer.text
    assert "traceparent" not in stored(client, sent)
    [got] = delivered(workers, rx, "/fresh")
    assert parsed(got.headers["traceparent"]).trace_id != TRACE
    assert got.event["traceparent"] == got.headers["traceparent"]


def test_every_attempt_of_a_delivery_has_its_own_span_in_one_trace(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """An event sent without trace context: each attempt of its delivery (a retry after a
    503) carries a new span id of one trace, and every attempt's signature verifies."""
    subscribe(client, rx, "/retried")
    rx.scripts["/retried"] = [(503, {})]
    assert post(client, event()).status_code == 202
    first, second = delivered(workers, rx, "/retried", 2)[:2]
    one, two = parsed(first.headers["traceparent"]), parsed(second.headers["traceparent"])
    assert one.trace_id == two.trace_id and one.span_id != two.span_id
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_a_repeat_with_another_traceparent_is_a_duplicate_keeping_the_first(
    client: httpx.Client,
) -> None:
    """De-duplication is by (source, id) alone: a retry with another traceparent is a 200
    duplicate and the event keeps the context it was first stored with."""
    sent = event()
    assert post(client, sent, {**STRUCTURED, "traceparent": PARENT}).status_code == 202
    again = post(client, sent, {**STRUCTURED, "traceparent": OTHER})
    assert again.status_code == 200 and again.json()["accepted"][0]["duplicate"]
    assert stored(client, sent)["traceparent"] == PARENT


@pytest.mark.parametrize("format_", ["slack", "teams", "pagerduty"])
def test_connector_requests_carry_the_traceparent_header(
    client: httpx.Client, rx: Receiver, workers: Workers, format_: str
) -> None:
    """A connector's request to its system carries a traceparent header of the event's trace
    (its body is the system's own format, not a CloudEvent)."""
    settings = {"routing_key": "R0123456789"} if format_ == "pagerduty" else {}
    path = "/v2/enqueue" if format_ == "pagerduty" else f"/{format_}"
    body = {"sink": rx.sink(path), "format": format_, "formatsettings": settings}
    created = client.post("/v1/subscriptions", json=body)
    assert created.status_code == 201, created.text
    assert post(client, event(), {**STRUCTURED, "traceparent": PARENT}).status_code == 202
    got = delivered(workers, rx, path)[0]
    assert parsed(got.headers["traceparent"]).trace_id == TRACE
    assert "traceparent" not in json.loads(got.body)
