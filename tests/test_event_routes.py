"""``GET /v1/events/{id}/routes``: for each subscription, what became of one event (not
matched and why, withheld with the rule, silenced with the silence, queued, delivered or
dead-lettered with the delivery), judged on the subscriptions as they are now."""

from __future__ import annotations

from typing import Any

import httpx

from incidents.delivery.lanes import routed_id
from incidents.policy.access import RULE_CLEARANCE, RULE_VISIBILITY_INTERNAL
from incidents.settings import Settings
from tests.console_support import sign_in
from tests.delivery_support import Receiver, Workers, fake_clock_workers, publish, subscribe
from tests.support import ADMIN_TOKEN, as_token, assert_problem, create_principal, event


def routes_of(client: httpx.Client, event_id: str) -> dict[str, dict[str, Any]]:
    r = client.get(f"/v1/events/{event_id}/routes")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert "as it is now" in body["judged_on"]
    return {route["subscription"]: route for route in body["routes"]}


def subscriber(client: httpx.Client, name: str, **fields: Any) -> httpx.Client:
    made = create_principal(client, name=name, roles=["subscriber"], **fields)
    return as_token(client, made["token"])


def test_each_subscription_says_what_became_of_the_event(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Type, source and filter misses name what failed; a delivered, a dead-lettered and a
    silenced delivery name their delivery (and silence); a clearance withholding and a
    visibility one name their rule; a subscription made afterwards was not routed."""
    subs = {
        "alerts": subscribe(client, rx, "/alerts", types=["im.alert.*"]),
        "source": subscribe(client, rx, "/source", source="/elsewhere"),
        "sev1": subscribe(client, rx, "/sev1", filters=[{"prefix": {"type": "im."}},
                                                        {"exact": {"imseverity": "SEV1"}}]),
        "ok": subscribe(client, rx, "/ok"),
        "dead": subscribe(client, rx, "/dead"),
        "quiet": subscribe(client, rx, "/quiet"),
    }  # fmt: skip
    public = subscriber(client, "public-only", clearance="public")
    outsider = subscriber(client, "outsider", tenant="globex")
    subs["clearance"] = subscribe(public, rx, "/clearance")
    subs["tenant"] = subscribe(outsider, rx, "/tenant")
    rx.scripts["/dead"] = [(500, {})] * 10
    silence = client.post("/v1/silences", json={
        "filter": {"exact": {"imservice": "checkout"}}, "subscriptions": [subs["quiet"]["id"]],
        "ends_at": "2099-01-01T00:00:00Z", "comment": "maintenance"}).json()  # fmt: skip
    sent = event(imincidentid="INC-ROUTES")  # SEV2, service checkout
    (accepted,) = publish(client, sent)

    def settled() -> bool:
        found = routes_of(client, sent["id"])
        return all(found[subs[k]["id"]]["route"] != "queued" for k in ("ok", "dead", "quiet"))

    workers.run_until(settled, timeout=30)
    later = subscribe(client, rx, "/later")
    found = routes_of(client, sent["id"])
    route = {name: found[sub["id"]] for name, sub in subs.items()}

    assert route["alerts"]["route"] == "not_matched"
    assert route["alerts"]["failed"] == {"types": ["im.alert.*"]}
    assert route["source"]["failed"] == {"source": "/elsewhere"}
    assert route["sev1"]["failed"] == {"filter": 1, "expression": {"exact": {"imseverity": "SEV1"}}}
    delivered_id = routed_id(accepted["sequence"], subs["ok"]["id"], "/tests", sent["id"])
    assert route["ok"]["route"] == "delivered"
    assert route["ok"]["delivery"]["id"] == delivered_id
    assert route["dead"]["route"] == "dead_lettered" and route["dead"]["delivery"]["attempts"] >= 2
    assert (route["quiet"]["route"], route["quiet"]["silence"]) == ("silenced", silence["id"])
    assert (route["clearance"]["route"], route["clearance"]["rule"]) == ("withheld", RULE_CLEARANCE)
    assert route["clearance"]["delivery"]["state"] == "withheld"
    assert route["tenant"]["route"] == "withheld"
    assert route["tenant"]["rule"] == RULE_VISIBILITY_INTERNAL
    assert "delivery" not in route["tenant"]  # such a withholding leaves no record
    assert found[later["id"]]["route"] == "not_routed"
    assert "after the event" in found[later["id"]]["reason"]
    public.close()
    outsider.close()


def test_a_queued_delivery_is_queued_with_its_delivery(
    settings: Settings, client: httpx.Client, rx: Receiver
) -> None:
    """A delivery whose first attempt failed and waits for its retry is queued, naming its
    delivery, attempts and last status code."""
    sub = subscribe(client, rx, "/flaky")
    rx.scripts["/flaky"] = [(503, {})]
    sent = event(imincidentid="INC-QUEUED")
    publish(client, sent)
    with fake_clock_workers(settings, rx) as workers:  # the retry never falls due
        workers.run_until(lambda: len(rx.at("/flaky")) == 1)
    route = routes_of(client, sent["id"])[sub["id"]]
    assert route["route"] == "queued" and route["reason"] == "retrying"
    assert (route["delivery"]["attempts"], route["delivery"]["last_status_code"]) == (1, 503)


def test_an_event_kept_on_the_timeline_only_was_routed_nowhere(
    client: httpx.Client, rx: Receiver
) -> None:
    """A repeated trigger of an open alert is not fanned out: not_routed for everyone."""
    sub = subscribe(client, rx, "/alerts")
    trigger = {"summary": "disk full", "severity": "SEV4"}
    publish(client, event("im.alert.trigger", trigger, imcorrelationkey="disk-1"))
    repeat = event("im.alert.trigger", trigger, imcorrelationkey="disk-1")
    publish(client, repeat)
    route = routes_of(client, repeat["id"])[sub["id"]]
    assert route["route"] == "not_routed" and "timeline only" in route["reason"]


def test_a_subscriber_sees_only_its_own_subscriptions_and_events(
    client: httpx.Client, rx: Receiver
) -> None:
    """A subscriber gets its own subscriptions only; another tenant's internal event is a 404
    for it; a producer may not ask; an unknown event is a 404."""
    alice = subscriber(client, "alice")
    outsider = subscriber(client, "outsider", tenant="globex")
    producer = as_token(client, create_principal(client, name="prod")["token"])
    mine = subscribe(alice, rx, "/alice")
    subscribe(client, rx, "/admin")
    sent = event(imincidentid="INC-OWN")
    publish(client, sent)
    assert list(routes_of(alice, sent["id"])) == [mine["id"]]
    assert len(routes_of(client, sent["id"])) == 2
    assert_problem(outsider.get(f"/v1/events/{sent['id']}/routes"), 404, "not-found")
    assert_problem(producer.get(f"/v1/events/{sent['id']}/routes"), 403, "forbidden")
    assert_problem(client.get("/v1/events/nope/routes"), 404, "not-found")
    for c in (alice, outsider, producer):
        c.close()


def test_an_event_id_with_slashes_still_reads(client: httpx.Client, rx: Receiver) -> None:
    """An id holding slashes reads back at /v1/events/{id} and explains at .../routes."""
    sub = subscribe(client, rx, "/slashes")
    sent = event(id="deploy/2026/05/01", imincidentid="INC-SLASH")
    publish(client, sent)
    assert client.get("/v1/events/deploy/2026/05/01").json()["event"]["id"] == sent["id"]
    route = routes_of(client, sent["id"])[sub["id"]]
    assert (route["route"], route["reason"]) == ("not_routed", "the event is not routed yet")


def test_the_console_event_page_shows_the_routes(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """The incident's timeline links each event to its page, which shows its context and a
    route per subscription."""
    sub = subscribe(client, rx, "/console", types=["im.alert.*"])
    sent = event(imincidentid="INC-PAGE")
    publish(client, sent)
    with sign_in(gateway, ADMIN_TOKEN) as console:
        incident = console.get("/console/incidents/INC-PAGE")
        assert f"/console/events/{sent['id']}?source=/tests" in incident.text
        page = console.get(f"/console/events/{sent['id']}", params={"source": "/tests"})
        assert page.status_code == 200, page.text
        assert sub["id"] in page.text and "not_matched" in page.text
        assert "SEV2" in page.text and "checkout" in page.text


def test_a_subscription_changed_since_routing_is_judged_as_it_is_now(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """An event routed while a subscription's filter refused it, explained after the filter
    was dropped: it matches now, and the answer says no delivery was queued when it was
    routed, because the subscription has changed since."""
    sub = subscribe(client, rx, "/changed", filters=[{"exact": {"imseverity": "SEV1"}}])
    other = subscribe(client, rx, "/other")
    sent = event(imincidentid="INC-CHANGED")  # SEV2
    publish(client, sent)
    workers.run_until(lambda: len(rx.at("/other")) == 1)
    assert routes_of(client, sent["id"])[sub["id"]]["route"] == "not_matched"
    assert client.patch(f"/v1/subscriptions/{sub['id']}", json={"filters": []}).is_success
    route = routes_of(client, sent["id"])[sub["id"]]
    assert route["route"] == "not_routed" and "changed since" in route["reason"]
    assert routes_of(client, sent["id"])[other["id"]]["route"] == "delivered"


def test_an_sql_filter_error_is_named_in_the_route(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A subscription whose sql filter failed with a cast error is not_matched, the route
    naming the filter, the expression and the error; once the filter is dropped it is still
    not_matched, from the delivery routing logged as filter_error; a missing attribute is
    named too."""
    expression = "INT(myext) > 3"
    sub = subscribe(client, rx, "/sql", filters=[{"sql": expression}])
    broken = event(imincidentid="INC-SQL", myext="abc")
    missing = event(imincidentid="INC-SQL-MISSING")
    publish(client, broken, missing)

    def logged() -> bool:
        attempts = workers.deliveries(client, sub["id"])
        return any(a["outcome"] == "filter_error" for a in attempts)

    workers.run_until(logged)
    route = routes_of(client, broken["id"])[sub["id"]]
    assert route["route"] == "not_matched"
    assert (route["failed"]["filter"], route["failed"]["expression"]) == (0, {"sql": expression})
    assert f"sql '{expression}' failed: cast error" in route["failed"]["error"]
    assert route["failed"]["error"] in route["reason"]
    unlogged = routes_of(client, missing["id"])[sub["id"]]
    assert unlogged["route"] == "not_matched" and "missingAttribute" in unlogged["failed"]["error"]
    assert client.patch(f"/v1/subscriptions/{sub['id']}", json={"filters": []}).is_success
    route = routes_of(client, broken["id"])[sub["id"]]
    assert route["route"] == "not_matched" and "when the event was routed" in route["reason"]
    assert "cast error" in route["failed"]["error"]
    assert route["delivery"]["state"] == "filter_error"
    assert routes_of(client, missing["id"])[sub["id"]]["route"] == "not_routed"
