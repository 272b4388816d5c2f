"""Hostile subscription input: every part of a subscription that could never be sent, or
that would make the gateway fail, is refused with a 400 that points at it; plain http://
sinks only when INCIDENTS_ALLOW_INSECURE_SINKS is on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from incidents.delivery.handshake import allowed_rate
from incidents.settings import Settings
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import admin_gateway, event
from tests.test_openapi import body_schema

SINK = "https://127.0.0.1:9/hook"  # never called: these subscriptions are only registered


@contextmanager
def gateway_with(settings: Settings, **changes: Any) -> Iterator[httpx.Client]:
    """A second gateway on the same Redis with changed settings, as an admin client."""
    with (
        admin_gateway(settings.replace(**changes)) as client,
    ):
        yield client


def refused(response: httpx.Response, where: str) -> str:
    """Assert a 400 problem with an error at ``where``; return that error's detail."""
    assert response.status_code == 400, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    found: dict[str, str] = {e["pointer"]: e["detail"] for e in response.json()["errors"]}
    assert where in found, found
    return found[where]


def headers_body(headers: Any) -> dict[str, Any]:
    return {"sink": SINK, "protocolsettings": {"headers": headers}}


@pytest.mark.parametrize(
    "value",
    [
        "a\x01b",  # C0 control
        "\x1b[31mred",  # escape
        "tab\x0bvertical",
        "a\x7fb",  # DEL
        "a\x85b",  # C1 control
        "caf\u00e9",  # Latin-1, not ASCII
        "snow \u2603",
        " leading space",
        "trailing tab\t",
    ],
)
def test_header_values_that_cannot_be_sent_are_400_naming_the_header(
    client: httpx.Client, value: str
) -> None:
    """A header value with a control character, DEL, non-ASCII text or whitespace at an end
    is refused at registration, pointing at the header, on create and on PATCH."""
    where = "/protocolsettings/headers/X-Token"
    detail = refused(client.post("/v1/subscriptions", json=headers_body({"X-Token": value})), where)
    assert "printable ASCII" in detail
    sub = client.post("/v1/subscriptions", json={"sink": SINK}).json()
    patched = client.patch(f"/v1/subscriptions/{sub['id']}", json=headers_body({"X-Token": value}))
    refused(patched, where)


def test_header_values_may_hold_inner_spaces_and_tabs_but_not_a_newline_in_the_name(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Visible ASCII with spaces and tabs inside is kept and delivered as given; a header
    name ending in a newline, one given twice in other case, too many headers or too many
    bytes are refused."""
    value = "".join(chr(c) for c in range(0x21, 0x7F)) + " x\ty"
    subscribe(client, rx, "/h", protocolsettings={"headers": {"X-All": value}})
    publish(client, event())
    workers.run_until(lambda: len(rx.at("/h")) == 1)
    assert rx.at("/h")[0].headers["x-all"] == value
    kept = client.post(
        "/v1/subscriptions", json=headers_body({"Authorization": "Bearer a\tb c", "X-E": ""})
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["protocolsettings"]["headers"] == {
        "Authorization": "Bearer a\tb c",
        "X-E": "",
    }
    refused(
        client.post("/v1/subscriptions", json=headers_body({"X-A\n": "v"})),
        "/protocolsettings/headers/X-A\n",
    )
    refused(
        client.post("/v1/subscriptions", json=headers_body({"X-A": "1", "x-a": "2"})),
        "/protocolsettings/headers/x-a",
    )
    many = {f"X-{i}": "v" for i in range(33)}
    refused(client.post("/v1/subscriptions", json=headers_body(many)), "/protocolsettings/headers")
    big = {f"X-{i}": "v" * 1000 for i in range(9)}
    detail = refused(
        client.post("/v1/subscriptions", json=headers_body(big)), "/protocolsettings/headers"
    )
    assert "8192" in detail


def nested(dialect: str, depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {"exact": {"type": "im.incident.declare"}}
    for _ in range(depth):
        inner = {dialect: inner} if dialect == "not" else {dialect: [inner]}
    return inner


@pytest.mark.parametrize(
    ("dialect", "depth"),
    [("not", 900), ("all", 500), ("any", 500), ("not", 40), ("all", 20), ("any", 20)],
)
def test_deeply_nested_filters_are_400_naming_the_limit(
    client: httpx.Client, dialect: str, depth: int
) -> None:
    """Filters nested hundreds deep are refused by the JSON nesting limit, and those within it
    but deeper than filters may nest by the filter limit: each a 400 naming its limit."""
    opening, closing = ('{"not":', "}") if dialect == "not" else (f'{{"{dialect}":[', "]}")
    leaf = json.dumps(nested(dialect, 0))
    text = f'{{"sink":"{SINK}","filters":[{opening * depth}{leaf}{closing * depth}]}}'
    response = client.post("/v1/subscriptions", content=text)
    assert response.status_code == 400, response.text[:300]
    problem = response.json()
    if depth > 64:
        assert problem["type"].endswith("json-too-deep") and problem["max_depth"] == 64
        return
    (error,) = problem["errors"]
    assert error["pointer"].startswith(f"/filters/0/{dialect}/")
    assert "at most 16 deep" in error["detail"]


def test_filters_within_the_limits_are_kept_and_used(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Fourteen nested `not`s pass and still filter; more than 256 terms are refused."""
    kept = subscribe(client, rx, "/deep", filters=[nested("not", 14)])
    assert kept["filters"] == [nested("not", 14)]
    publish(client, event("im.incident.declare"), event("im.incident.note", imincidentid="INC-1"))
    workers.run_until(lambda: len(rx.at("/deep")) == 1)
    assert rx.at("/deep")[0].event["type"] == "im.incident.declare"
    wide = [{"any": [{"exact": {"type": f"t{i}"}} for i in range(300)]}]
    # the any, then per branch one expression and one attribute test: branch 127 is one too many
    detail = refused(
        client.post("/v1/subscriptions", json={"sink": SINK, "filters": wide}),
        "/filters/0/any/127/exact/type",
    )
    assert "at most 256" in detail
    many_pairs = [{"exact": {f"a{i}": "x" for i in range(300)}}]
    refused(
        client.post("/v1/subscriptions", json={"sink": SINK, "filters": many_pairs}),
        "/filters/0/exact/a255",
    )


def test_a_bad_sql_filter_is_400_with_the_position_and_what_was_expected(
    client: httpx.Client,
) -> None:
    """The problem points at the sql filter and its detail says where the expression goes
    wrong and what was expected there, on create and on PATCH."""
    body = {"filters": [{"sql": "imseverity IN ('SEV1', 'SEV2' AND imservice LIKE 'pay%'"}]}
    detail = refused(
        client.post("/v1/subscriptions", json={"sink": SINK, **body}), "/filters/0/sql"
    )
    assert "expected ',' or ')' to close the IN list" in detail and "(at position 56)" in detail
    sub = client.post("/v1/subscriptions", json={"sink": SINK}).json()
    refused(client.patch(f"/v1/subscriptions/{sub['id']}", json=body), "/filters/0/sql")


def test_sql_filters_choose_what_is_delivered(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Of four events, the sql filter lets through the two it is true of (an integer and a
    string attribute); the one that lacks the attribute and the one it fails on (a cast
    error) are not sent."""
    sql = "team LIKE '%payments%' AND INT(rank) > 10"
    kept = subscribe(client, rx, "/sql", filters=[{"sql": sql}])
    assert kept["filters"] == [{"sql": sql}]
    publish(
        client,
        event("im.incident.declare", team="db,payments", rank=42),
        event("im.incident.declare", team="payments"),
        event("im.incident.declare", team="payments", rank="x"),
        event("im.incident.declare", team="payments", rank="11"),
    )
    workers.run_until(lambda: len(rx.at("/sql")) == 2)
    workers.run_until(lambda: not workers.scheduler.pending())
    assert sorted(str(r.event["rank"]) for r in rx.at("/sql")) == ["11", "42"]


@pytest.mark.parametrize(
    "sink",
    [
        "http://a..b/x",
        "http://" + "a" * 64 + ".example/",
        "http://" + "a." * 127 + "example/",  # more than 253 characters
        "http://xn--abc.example/",  # not valid punycode
        "http://x.example:0/",
        "http://[fe80::1%25eth0]/",  # IPv6 zone identifier
        "http://[v1.x]/",  # IPvFuture
        "http://@x.example/",  # userinfo, even empty
        "http://2130706433/",  # a legacy numeric IPv4 form
        "http://0x7f.1/",
        "https://%65xample.com/",
        "http://x.example/\n",
        "http://exa mple.com/",
        "http://\u00ad.example/",
    ],
)
def test_sinks_that_cannot_be_resolved_or_encoded_are_400(client: httpx.Client, sink: str) -> None:
    """A sink whose host cannot be IDNA-encoded, looked up or connected to as written is a
    400 at /sink, also when private sinks are allowed (no lookup happens then)."""
    refused(client.post("/v1/subscriptions", json={"sink": sink}), "/sink")


@pytest.mark.parametrize("sink", ["http://a..b/x", "https://" + "a" * 64 + ".example/"])
def test_unencodable_sinks_are_400_when_they_would_be_looked_up(
    settings: Settings, sink: str
) -> None:
    """With private sinks refused the sink is looked up; a name the IDNA codec refuses is a
    400 at /sink rather than a 500."""
    with gateway_with(settings, allow_private_sinks=False) as strict:
        refused(strict.post("/v1/subscriptions", json={"sink": sink}), "/sink")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"types": [f"im.t{i}" for i in range(101)]}, "/types"),
        ({"types": ["im.alert.trigger\n"]}, "/types/0"),
        ({"types": {}}, "/types"),
        ({"source": "s" * 2049}, "/source"),
        ({"filters": {}}, "/filters"),
        ({"filters": [{"exact": {"type\n": "x"}}]}, "/filters/0/exact/type\n"),
        ({"filters": [{"exact": {"type": "x" * 1025}}]}, "/filters/0/exact/type"),
        ({"protocolsettings": {"headers": []}}, "/protocolsettings/headers"),
        ({"description": 0}, "/description"),
    ],
)
def test_oversized_or_mistyped_fields_are_400_with_a_pointer(
    client: httpx.Client, body: dict[str, Any], where: str
) -> None:
    """Over-long lists and strings, a trailing newline, and empty values of the wrong type
    are each a 400 pointing at the field, on create and on PATCH."""
    refused(client.post("/v1/subscriptions", json={"sink": SINK, **body}), where)
    sub = client.post("/v1/subscriptions", json={"sink": SINK}).json()
    refused(client.patch(f"/v1/subscriptions/{sub['id']}", json=body), where)


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663"])
def test_a_limit_that_is_not_plain_digits_is_400(client: httpx.Client, limit: str) -> None:
    """`limit` on the delivery log and the dead letters is plain ASCII digits, else a 400."""
    sub = client.post("/v1/subscriptions", json={"sink": SINK}).json()
    for path in (f"/v1/subscriptions/{sub['id']}/deliveries", "/v1/dead-letters"):
        response = client.get(path, params={"limit": limit})
        assert response.status_code == 400, (path, response.text[:200])
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("raw", ["\u00b2", "\u0663", "\u0663\u0660", "1" * 12])
def test_a_rate_in_other_digits_or_too_long_is_no_rate(raw: str) -> None:
    """WebHook-Allowed-Rate is a positive ASCII decimal of at most 9 digits; Unicode digits
    (which Python's isdigit and int accept) or a longer number are no rate at all."""
    assert allowed_rate(raw) is None
    assert allowed_rate(" 60 ") == 60


def test_a_handshake_rate_in_unicode_digits_is_treated_as_absent(
    client: httpx.Client, rx: Receiver
) -> None:
    """A sink answering `WebHook-Allowed-Rate: ²` (UTF-8 on the wire) activates the
    subscription with no rate rather than failing the request."""
    utf8 = "\u00b2".encode().decode("latin-1")  # the receiver writes header text as Latin-1
    rx.handshake_reply = {"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": utf8}
    created = subscribe(client, rx, "/sq", config={"handshake": True})
    assert created["status"] == "active" and created["rate"] is None


def test_a_refusing_handshake_with_undecodable_bytes_is_stored_and_shown(
    client: httpx.Client, rx: Receiver
) -> None:
    """A WebHook-Allowed-Origin that is not UTF-8 leaves the subscription disabled with a
    readable reason (bytes escaped), not a 500."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "\xff\xfe"}
    created = subscribe(client, rx, "/bytes", config={"handshake": True})
    assert created["status"] == "disabled"
    assert "\\udcff\\udcfe" in created["reason"]
    assert client.get(f"/v1/subscriptions/{created['id']}").json()["reason"] == created["reason"]


def test_a_granted_handshake_remembers_its_origin(client: httpx.Client, rx: Receiver) -> None:
    """The origin sent in the granted handshake is kept on the subscription and shown; it is
    forgotten when the subscription stops asking for the handshake."""
    rx.handshake_reply = {"WebHook-Allowed-Origin": "127.0.0.1"}
    created = subscribe(client, rx, "/origin", config={"handshake": True})
    assert created["status"] == "active" and created["origin"] == "127.0.0.1"
    assert client.get(f"/v1/subscriptions/{created['id']}").json()["origin"] == "127.0.0.1"
    plain = client.patch(f"/v1/subscriptions/{created['id']}", json={"config": {}})
    assert plain.json()["origin"] is None and plain.json()["rate"] is None


def test_plain_http_sinks_are_refused_unless_allowed(settings: Settings, rx: Receiver) -> None:
    """With INCIDENTS_ALLOW_INSECURE_SINKS off, an http:// sink is a 400 at /sink naming the
    setting, on create and when a PATCH moves a sink to it; https:// is accepted."""
    with gateway_with(settings, allow_insecure_sinks=False) as strict:
        detail = refused(strict.post("/v1/subscriptions", json={"sink": rx.sink("/x")}), "/sink")
        assert "INCIDENTS_ALLOW_INSECURE_SINKS" in detail and "https" in detail
        created = strict.post("/v1/subscriptions", json={"sink": SINK})
        assert created.status_code == 201, created.text
        moved = strict.patch(
            f"/v1/subscriptions/{created.json()['id']}", json={"sink": rx.sink("/x")}
        )
        assert "INCIDENTS_ALLOW_INSECURE_SINKS" in refused(moved, "/sink")


def test_an_http_sink_from_before_must_move_to_https_to_stay_active(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A subscription registered while http:// was allowed cannot be changed or re-enabled
    while it is not; it can still be disabled and deleted."""
    sub = subscribe(client, rx, "/old")
    with gateway_with(settings, allow_insecure_sinks=False) as strict:
        path = f"/v1/subscriptions/{sub['id']}"
        refused(strict.patch(path, json={"types": ["im.incident.*"]}), "/sink")
        assert strict.patch(path, json={"status": "disabled"}).status_code == 200
        assert strict.patch(path, json={"description": "kept off"}).status_code == 200
        refused(strict.patch(path, json={"status": "active"}), "/sink")
        assert strict.patch(path, json={"sink": SINK, "status": "active"}).status_code == 200
        assert strict.delete(path).status_code == 204


def test_an_http_sink_registered_earlier_is_refused_at_delivery(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """Workers with insecure sinks off send nothing to a plain http:// sink registered while
    they were allowed: the attempt is `refused` and its error names the setting."""
    sub = subscribe(client, rx, "/insecure")
    publish(client, event())
    strict = Workers(settings.replace(allow_insecure_sinks=False))
    try:
        strict.run_until(lambda: bool(strict.deliveries(client, sub["id"])))
        attempt = strict.deliveries(client, sub["id"])[0]
    finally:
        strict.close()
    assert attempt["outcome"] == "refused"
    assert "INCIDENTS_ALLOW_INSECURE_SINKS" in attempt["error"]
    assert rx.at("/insecure") == []


@pytest.mark.parametrize(
    "body",
    [
        headers_body({"X-Token": "caf\u00e9"}),
        headers_body({"X-Token": "a\x01b"}),
        headers_body({f"X-{i}": "v" for i in range(33)}),
        {"sink": SINK, "types": [f"im.t{i}" for i in range(101)]},
        {"sink": SINK, "source": "s" * 2049},
        {"sink": SINK, "filters": [{"exact": {"type": "x" * 1025}}]},
        {"sink": SINK, "filters": [{"sql": "a = '" + "x" * 4096 + "'"}]},
        {"sink": SINK, "filters": [{"sql": 1}]},
    ],
)
def test_the_openapi_body_schema_refuses_what_the_server_refuses(
    client: httpx.Client, body: dict[str, Any]
) -> None:
    """The published subscription body states the header-value rule and the size limits."""
    doc = client.get("/openapi.json").json()
    assert not body_schema(doc, "/v1/subscriptions", "post").is_valid(body)
    assert client.post("/v1/subscriptions", json=body).status_code == 400
    fine = headers_body({"Authorization": "Bearer a\tb c"})
    assert body_schema(doc, "/v1/subscriptions", "post").is_valid(fine)
