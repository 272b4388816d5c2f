"""An ``sql`` filter that fails on an event with an evaluation error: the event is not sent,
and the subscription's delivery log says so (``filter_error``) naming the expression, unless
the owner may not see the event at all; a missing attribute is a plain no match."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

from incidents.delivery.lanes import record_bucket, routed_id
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import as_token, create_principal, event

CAST = "INT(myext) > 3"


def logged(workers: Workers, client: httpx.Client, sub_id: str, outcome: str) -> list[Any]:
    return [a for a in workers.deliveries(client, sub_id) if a["outcome"] == outcome]


def test_a_failed_cast_is_not_sent_and_is_logged_naming_the_expression(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """myext 'abc' makes INT(myext) fail: not delivered, logged as filter_error with the
    expression and the cast error; an event without myext logs nothing; myext '5' is sent."""
    sub = subscribe(client, rx, "/cast", filters=[{"sql": CAST}])
    missing = event(imincidentid="INC-MISSING")
    broken = event(imincidentid="INC-BROKEN", myext="abc")
    wanted = event(imincidentid="INC-WANTED", myext="5")
    publish(client, missing, broken, wanted)  # routed in this order
    workers.run_until(
        lambda: (
            len(rx.at("/cast")) == 1 and bool(logged(workers, client, sub["id"], "filter_error"))
        )
    )
    assert [r.event["id"] for r in rx.at("/cast")] == [wanted["id"]]
    assert all(r.verified for r in rx.at("/cast"))
    attempts = workers.deliveries(client, sub["id"])
    assert [(a["event_id"], a["outcome"]) for a in attempts] == [
        (broken["id"], "filter_error"),
        (wanted["id"], "delivered"),
    ]  # nothing for the event that lacks myext
    error = attempts[0]["error"]
    assert f"sql '{CAST}' failed" in error and "cast error" in error and "abc" in error
    log = client.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()
    operation = client.get("/openapi.json").json()["paths"]["/v1/subscriptions/{id}/deliveries"]
    schema = operation["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    checker = Draft202012Validator.FORMAT_CHECKER
    Draft202012Validator(schema, format_checker=checker).validate(log)  # the outcome is listed


def test_an_event_the_owner_may_not_see_leaves_no_filter_error(
    client: httpx.Client, rx: Receiver, workers: Workers, redis_client: Any
) -> None:
    """Another tenant's subscription with the same failing filter gets no log entry and no
    record for the internal event (an admin's does), and later events of the incident it
    may see still go out."""
    outsider = as_token(client, create_principal(client, name="outsider", roles=["subscriber"],
                                                 tenant="globex")["token"])  # fmt: skip
    theirs = subscribe(outsider, rx, "/theirs", filters=[{"sql": CAST}])
    ours = subscribe(client, rx, "/ours", filters=[{"sql": CAST}])
    hidden = event(imincidentid="INC-HIDDEN", myext="abc")  # internal to the default tenant
    shown = event("im.incident.note", imincidentid="INC-HIDDEN", myext="7", imvisibility="public")
    accepted = publish(client, hidden, shown)
    workers.run_until(
        lambda: (
            len(rx.at("/theirs")) == 1
            and len(rx.at("/ours")) == 1
            and bool(logged(workers, client, ours["id"], "filter_error"))
        )
    )
    assert rx.at("/theirs")[0].event["id"] == shown["id"]
    theirs_log = workers.deliveries(outsider, theirs["id"])
    assert [(a["event_id"], a["outcome"]) for a in theirs_log] == [(shown["id"], "delivered")]
    dropped = routed_id(accepted[0]["sequence"], theirs["id"], "/tests", hidden["id"])
    assert not redis_client.hexists(record_bucket(accepted[0]["sequence"]), dropped)
    (failed,) = logged(workers, client, ours["id"], "filter_error")
    assert failed["event_id"] == hidden["id"]
    outsider.close()
