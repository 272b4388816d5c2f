"""Routing and delivery, end to end: gateway -> outbox -> RQ workers -> a real receiver."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.crc import key_slot

from incidents import __version__
from incidents.settings import Settings
from tests.delivery_support import Receiver, Workers, fake_clock_workers, publish, subscribe
from tests.support import event


@pytest.fixture
def workers(settings: Settings, rx: Receiver) -> Iterator[Workers]:
    """The workers on a fake clock, which jumps to the next due lane when nothing is due now:
    retries and Retry-After waits are kept to exactly, without waiting out real time."""
    with fake_clock_workers(settings, rx) as found:
        yield found


def test_an_accepted_event_reaches_a_matching_subscription_signed(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A declared incident is POSTed to the subscribed sink, signed as standardwebhooks expects."""
    subscribe(client, rx, "/a", types=["im.incident.declare"])
    sent = event("im.incident.declare")
    publish(client, sent)
    workers.run_until(lambda: len(rx.at("/a")) == 1)
    got = rx.at("/a")[0]
    assert got.verified
    assert got.event["id"] == sent["id"]
    assert got.headers["user-agent"] == f"incidents/{__version__}"
    assert got.headers["content-type"].startswith("application/cloudevents+json")


def test_binary_mode_sends_ce_headers_and_the_custom_headers(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """In binary mode the attributes travel as ce- headers, the data is the body, and the
    subscription's own headers come along; the signature covers the body as sent."""
    subscribe(
        client,
        rx,
        "/bin",
        config={"mode": "binary"},
        protocolsettings={"headers": {"X-Team": "sre on call"}},
    )
    sent = event("im.incident.declare", imtags="a b,c")
    publish(client, sent)
    workers.run_until(lambda: len(rx.at("/bin")) == 1)
    got = rx.at("/bin")[0]
    assert got.verified
    assert got.headers["ce-id"] == sent["id"]
    assert got.headers["ce-type"] == "im.incident.declare"
    assert got.headers["ce-imtags"] == "a%20b,c"
    assert got.headers["x-team"] == "sre on call"
    assert got.event == sent["data"]


def test_failures_are_retried_with_the_same_webhook_id_and_logged(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A 500 and a timeout-free 502 are retried on the schedule; every try carries one
    webhook-id, and the attempt log shows both failures and the next attempt."""
    sub = subscribe(client, rx, "/retry")
    rx.scripts["/retry"] = [(500, {}), (502, {})]
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/retry")) == 3)
    got = rx.at("/retry")
    assert all(r.verified for r in got)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    workers.run_until(lambda: len(workers.deliveries(client, sub["id"])) == 3)
    log = workers.deliveries(client, sub["id"])
    assert [a["outcome"] for a in log] == ["failed", "failed", "delivered"]
    assert [a["status_code"] for a in log] == [500, 502, 200]
    assert [a["attempt"] for a in log] == [1, 2, 3]
    assert log[0]["next_attempt"] is not None and log[2]["next_attempt"] is None
    assert log[0]["response"] == "nope"
    assert got[1].at - got[0].at >= 0.2 * 0.8 - 0.05


def test_retry_after_is_waited_out_in_full(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A 429 asking for 1 s waits the whole second, five times the scheduled 0.2 s."""
    subscribe(client, rx, "/slow-down")
    rx.scripts["/slow-down"] = [(429, {"Retry-After": "1"})]
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: len(rx.at("/slow-down")) == 2)
    first, second = rx.at("/slow-down")
    assert 1.0 <= second.at - first.at < 4


def test_410_disables_the_subscription_and_nothing_more_is_sent(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A sink answering 410 Gone gets no further deliveries; the subscription says why."""
    sub = subscribe(client, rx, "/gone")
    rx.scripts["/gone"] = [(410, {})]
    publish(client, event("im.incident.declare"))
    workers.run_until(
        lambda: client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "disabled"
    )
    assert "410" in client.get(f"/v1/subscriptions/{sub['id']}").json()["reason"]
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: not workers.scheduler.pending())
    assert len(rx.at("/gone")) == 1


def test_an_incident_is_delivered_in_order_while_others_are_not_held_up(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Events of one incident arrive in acceptance order even when the first one fails
    twice; an event of another incident is delivered meanwhile, not after them."""
    subscribe(client, rx, "/ordered")
    first = event("im.incident.declare", imincidentid="INC-7")
    later = [event("im.incident.note", imincidentid="INC-7") for _ in range(3)]
    other = event("im.incident.declare", imincidentid="INC-8")
    rx.scripts[first["id"]] = [(503, {}), (500, {})]
    publish(client, first, *later)
    publish(client, other)
    workers.run_until(lambda: len(rx.at("/ordered")) == 7)
    ids = [r.event["id"] for r in rx.at("/ordered")]
    seven = [i for i in ids if i != other["id"]]
    assert seven == [first["id"]] * 3 + [e["id"] for e in later]
    assert ids.index(other["id"]) < ids.index(later[0]["id"])


def test_exhausted_retries_make_a_dead_letter_that_can_be_redriven(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """After the whole schedule fails the delivery is a dead letter; the next event of the
    incident is no longer held; a redrive delivers the dead one with the same webhook-id."""
    subscribe(client, rx, "/dead")
    doomed = event("im.incident.declare", imincidentid="INC-9")
    after = event("im.incident.note", imincidentid="INC-9")
    rx.scripts[doomed["id"]] = [(500, {})] * 4
    publish(client, doomed, after)
    workers.run_until(lambda: len(rx.at("/dead")) == 5)
    assert [r.event["id"] for r in rx.at("/dead")] == [doomed["id"]] * 4 + [after["id"]]
    dead = client.get("/v1/dead-letters").json()["dead_letters"]
    assert [d["attempts"] for d in dead] == [4]
    assert "retries exhausted" in dead[0]["reason"]
    redriven = client.post(f"/v1/dead-letters/{dead[0]['id']}/redrive")
    assert redriven.status_code == 202
    workers.run_until(lambda: len(rx.at("/dead")) == 6)
    last = rx.at("/dead")[-1]
    assert last.event["id"] == doomed["id"] and last.verified
    assert last.headers["webhook-id"] == rx.at("/dead")[0].headers["webhook-id"]
    assert client.get("/v1/dead-letters").json()["dead_letters"] == []


def test_a_redirect_is_a_failure_and_is_never_followed(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A 307 to another URL counts as a failed attempt and is retried at the sink itself;
    nothing is ever sent to the Location."""
    sub = subscribe(client, rx, "/moved")
    rx.scripts["/moved"] = [(307, {"Location": rx.sink("/elsewhere")})]
    publish(client, event("im.incident.declare"))
    workers.run_until(lambda: len(workers.deliveries(client, sub["id"])) == 2)
    first, second = workers.deliveries(client, sub["id"])
    assert first["outcome"] == "failed" and first["status_code"] == 307
    assert "redirects are not followed" in first["error"]
    assert second["outcome"] == "delivered"
    assert rx.at("/elsewhere") == [] and len(rx.at("/moved")) == 2


def test_every_key_of_an_incident_shares_its_hash_tag(
    client: httpx.Client, rx: Receiver, workers: Workers, redis_client: redis.Redis
) -> None:
    """The timeline, document, external references and delivery lanes of one incident hash
    to one Redis Cluster slot (so the data can later be split by incident)."""
    subscribe(client, rx, "/tagged")
    rx.scripts["/tagged"] = [(500, {})]  # the lane stays while its retry is due
    declared = publish(client, event("im.incident.declare"))[0]["incident"]
    workers.run_until(lambda: len(rx.at("/tagged")) == 1)
    named = [k.decode() for k in redis_client.scan_iter(match=f"*{declared}*")]
    named = [k for k in named if re.search(re.escape(declared) + r"\b(?!-)", k)]
    kinds = {k.split(":")[1] for k in named}
    assert {"timeline", "incident", "lane"} <= kinds, named
    assert len({key_slot(k.encode()) for k in named}) == 1, named


def test_a_sequence_handed_out_again_gets_a_new_webhook_id(
    client: httpx.Client, rx: Receiver, workers: Workers, redis_client: redis.Redis
) -> None:
    """A failover that loses the last writes hands their sequences out again: the next event
    under a reused sequence is still delivered, with a webhook-id of its own (a subscriber
    deduplicating on webhook-id must not drop it as the lost one)."""
    subscribe(client, rx, "/reused")
    first = publish(client, event("im.incident.declare"))[0]
    workers.run_until(lambda: len(rx.at("/reused")) == 1)
    redis_client.decr("incidents:seq")  # the new primary never had the last sequence
    second = publish(client, event("im.incident.declare"))[0]
    assert second["sequence"] == first["sequence"]
    workers.run_until(lambda: len(rx.at("/reused")) == 2)
    got = rx.at("/reused")
    assert [r.event["id"] for r in got] == [first["id"], second["id"]]
    assert got[0].headers["webhook-id"] != got[1].headers["webhook-id"]
