"""The console's delivery and alert pages over HTTP, with real workers and a real receiver:
a subscription's enable/disable, replay and secret rotation, its latest attempts and failure
rate, dead-letter redrive, and the alerts page with its filter and paging."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from incidents.settings import Settings
from tests.console_support import csrf_of, sign_in
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import ADMIN_TOKEN, create_principal, event


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One quick retry, so a failing delivery is a dead letter in a fraction of a second."""
    return replace(settings, retry_schedule=(0.1,))


def change(c: httpx.Client, sub_id: str, **form: str) -> httpx.Response:
    """Post a change form on the subscription's page, with the page's CSRF token."""
    page = c.get(f"/console/subscriptions/{sub_id}")
    assert page.status_code == 200, page.text
    return c.post(f"/console/subscriptions/{sub_id}", data={"csrf": csrf_of(page.text), **form})


def delivered(rx: Receiver, path: str) -> list[str]:
    return [r.event["id"] for r in rx.at(path) if r.verified]


def test_disable_then_enable_changes_the_subscription_and_says_so(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """Disable and Enable set the subscription's status through the API and the page shows
    the new status, a notice and the opposite button."""
    sub = subscribe(client, rx, "/toggle")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="disable")
        assert r.status_code == 200 and 'id="notice"' in r.text
        assert "Subscription disabled." in r.text and 'id="enable"' in r.text
        assert client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "disabled"
        r = change(c, sub["id"], change="enable")
        assert r.status_code == 200 and "Subscription enabled." in r.text
        assert 'id="disable"' in r.text
    assert client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"


def test_another_owners_subscription_cannot_be_changed(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """A subscriber posting a change to someone else's subscription gets a 404 page and the
    subscription stays as it was."""
    sub = subscribe(client, rx, "/theirs")
    other = create_principal(client, name="other-team", roles=["subscriber"])
    with sign_in(gateway, other["token"]) as c:
        assert c.get(f"/console/subscriptions/{sub['id']}").status_code == 404
        csrf = csrf_of(c.get("/console/incidents").text)
        r = c.post(f"/console/subscriptions/{sub['id']}", data={"csrf": csrf, "change": "disable"})
        assert r.status_code == 404
    assert client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"


def test_replay_since_a_time_sends_the_events_again(
    gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Replay since a time before an event queues it again (the notice says how many) and the
    worker delivers it to the sink a second time."""
    sub = subscribe(client, rx, "/replay")
    before = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    sent = publish(client, event())[0]["id"]
    workers.run_until(lambda: delivered(rx, "/replay") == [sent])
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="replay", since=before)
        assert r.status_code == 200, r.text
        assert f"Replay queued 1 event(s) since {before}." in html.unescape(r.text)
    workers.run_until(lambda: delivered(rx, "/replay") == [sent, sent])


@pytest.mark.parametrize("since", ["", "yesterday", "2024-05-01T00:00:00"])
def test_a_replay_time_without_a_zone_is_refused_on_the_page(
    gateway: str, client: httpx.Client, rx: Receiver, since: str
) -> None:
    """A missing, unreadable or zoneless replay time answers the page with a 400 problem
    that names the field, and queues nothing."""
    sub = subscribe(client, rx, "/bad-since")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="replay", since=since)
        assert r.status_code == 400 and 'id="problem"' in r.text
        assert "RFC 3339" in r.text and "/since" in r.text
        assert 'id="notice"' not in r.text


def test_replaying_a_disabled_subscription_shows_the_conflict(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """Replay on a disabled subscription answers the page with the API's 409 and its detail."""
    sub = subscribe(client, rx, "/off")
    assert client.patch(f"/v1/subscriptions/{sub['id']}", json={"status": "disabled"}).is_success
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="replay", since="2024-05-01T00:00:00Z")
        assert r.status_code == 409 and "enable it first" in r.text


def test_an_unknown_change_is_a_400_on_the_page(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """A change the page does not offer answers 400 with the problem shown, changing nothing."""
    sub = subscribe(client, rx, "/unknown")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="delete")
        assert r.status_code == 400 and "unknown change" in html.unescape(r.text)
    assert client.get(f"/v1/subscriptions/{sub['id']}").json()["status"] == "active"


def test_rotating_shows_the_new_secret_once_and_deliveries_are_signed_with_it(
    gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Rotate shows a new whsec_ secret (once: not on the next visit) and the next delivery
    verifies with that secret alone."""
    sub = subscribe(client, rx, "/rotate")
    old = sub["secret"]
    with sign_in(gateway, ADMIN_TOKEN) as c:
        r = change(c, sub["id"], change="rotate")
        assert r.status_code == 200 and 'id="secret"' in r.text
        found = re.search(r'id="secret".*?<code>(whsec_[^<]+)</code>', r.text, re.S)
        assert found and found.group(1) != old
        assert "previous one stays valid until" in r.text
        assert found.group(1) not in c.get(f"/console/subscriptions/{sub['id']}").text
    rx.secrets["/rotate"] = found.group(1)
    sent = publish(client, event())[0]["id"]
    workers.run_until(lambda: bool(rx.at("/rotate")))
    assert delivered(rx, "/rotate") == [sent]


def test_the_page_shows_each_attempt_with_its_request_response_and_the_failure_rate(
    gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A delivery that failed once with 500 then succeeded shows both attempts (outcome,
    status, the request's method, URL and body, the response body) and a 50% failure rate,
    on the subscription's page and in the list."""
    sub = subscribe(client, rx, "/flaky")
    rx.scripts["/flaky"] = [(500, {})]
    sent = publish(client, event(data={"title": "Disk full", "severity": "SEV2", "service": "db"}))[
        0
    ]["id"]
    workers.run_until(lambda: delivered(rx, "/flaky") == [sent, sent])
    with sign_in(gateway, ADMIN_TOKEN) as c:
        page = c.get(f"/console/subscriptions/{sub['id']}")
        assert page.status_code == 200
        text = html.unescape(page.text)
        rows = re.findall(r'<tr class="outcome-(\w+)">(.*?)</tr>', text, re.S)
        assert [outcome for outcome, _ in rows] == ["delivered", "failed"]
        newest, oldest = rows[0][1], rows[1][1]
        assert "· 200" in newest and "· 500" in oldest
        for row in (newest, oldest):
            assert f"POST {rx.sink('/flaky')}" in row and sent in row and "Disk full" in row
        assert "<pre>ok</pre>" in newest and "<pre>nope</pre>" in oldest
        assert "50% of the latest 2 attempts" in text
        listing = c.get("/console/subscriptions").text
        row = re.search(rf"{sub['id']}.*?</tr>", listing, re.S)
        assert row and "50%" in row.group(0)


def test_a_subscription_with_no_attempts_shows_no_failure_rate(
    gateway: str, client: httpx.Client, rx: Receiver
) -> None:
    """Before any attempt the page says so and the failure rate is a dash, not 0%."""
    sub = subscribe(client, rx, "/quiet")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        text = c.get(f"/console/subscriptions/{sub['id']}").text
        assert "No attempts yet." in text and "— of the latest 0 attempts" in text


def dead_letter(client: httpx.Client, rx: Receiver, workers: Workers, path: str) -> dict[str, Any]:
    """A subscription whose sink fails both tries of one event: its dead letter."""
    sub = subscribe(client, rx, path)
    rx.scripts[path] = [(500, {})] * 2
    publish(client, event())

    def dead() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = client.get("/v1/dead-letters").json()["dead_letters"]
        return [d for d in found if d["subscription"] == sub["id"]]

    workers.run_until(lambda: bool(dead()))
    return dead()[0]


def test_redriving_a_dead_letter_delivers_it_and_empties_the_list(
    gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """The dead-letters page lists a dead delivery with its last error; Redrive queues it,
    goes back to the list, and the worker delivers it to the sink."""
    dead = dead_letter(client, rx, workers, "/dead")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        page = c.get("/console/dead-letters")
        assert dead["id"] in page.text and "500" in page.text
        r = c.post(f"/console/dead-letters/{dead['id']}/redrive", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/console/dead-letters"
        workers.run_until(lambda: len(delivered(rx, "/dead")) == 3)
        assert rx.at("/dead")[-1].verified
        assert dead["id"] not in c.get("/console/dead-letters").text
    assert client.get("/v1/dead-letters").json()["dead_letters"] == []


def test_redriving_what_is_no_dead_letter_shows_the_problem(
    gateway: str, client: httpx.Client
) -> None:
    """Redriving an unknown id answers the dead-letters page with the 404 problem."""
    with sign_in(gateway, ADMIN_TOKEN) as c:
        csrf = csrf_of(c.get("/console/dead-letters").text)
        r = c.post("/console/dead-letters/no-such-delivery/redrive", data={"csrf": csrf})
        assert r.status_code == 404 and 'id="problem"' in r.text
        assert "no-such-delivery" in html.unescape(r.text)


def test_only_an_admin_may_redrive(
    gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A subscriber's redrive is a 403 page and the dead letter stays."""
    dead = dead_letter(client, rx, workers, "/dead-403")
    user = create_principal(client, name="sub-only", roles=["subscriber"])
    with sign_in(gateway, user["token"]) as c:
        csrf = csrf_of(c.get("/console/incidents").text)
        r = c.post(f"/console/dead-letters/{dead['id']}/redrive", data={"csrf": csrf})
        assert r.status_code == 403
    found = client.get("/v1/dead-letters").json()["dead_letters"]
    assert [d["id"] for d in found] == [dead["id"]]


def alerts(client: httpx.Client, type_: str, keys: list[str]) -> None:
    batch = [
        event(
            type_,
            {"summary": f"{key} is failing", "severity": "SEV3", "labels": {"service": "api"}},
            imcorrelationkey=key,
        )
        for key in keys
    ]
    r = client.post(
        "/v1/events",
        content=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 202, r.text


def keys_on(page: str) -> list[str]:
    return re.findall(r"<code>(alert-[\w-]+)</code>", page)


def test_the_alerts_page_lists_and_filters_by_status(gateway: str, client: httpx.Client) -> None:
    """Alerts are listed with summary, count and status; status=resolved shows only resolved
    ones (and keeps that choice selected); an unknown status is a 400 page."""
    alerts(client, "im.alert.trigger", ["alert-a", "alert-b"])
    alerts(client, "im.alert.trigger", ["alert-a"])
    alerts(client, "im.alert.resolve", ["alert-b"])
    with sign_in(gateway, ADMIN_TOKEN) as c:
        page = c.get("/console/alerts").text
        assert sorted(keys_on(page)) == ["alert-a", "alert-b"]
        assert "alert-a is failing" in page and "<td>2\u00d7</td>" in page
        resolved = c.get("/console/alerts", params={"status": "resolved"}).text
        assert keys_on(resolved) == ["alert-b"]
        assert '<option value="resolved" selected>' in resolved
        bad = c.get("/console/alerts", params={"status": "sleeping"})
        assert bad.status_code == 400 and "sleeping" in html.unescape(bad.text)


def test_older_alerts_keep_the_status_filter(gateway: str, client: httpx.Client) -> None:
    """With more resolved alerts than a page holds, the Older alerts link keeps status=resolved:
    the second page shows the remaining resolved alerts and no firing one."""
    resolved = [f"alert-r{i:02d}" for i in range(55)]
    alerts(client, "im.alert.trigger", [*resolved, "alert-firing"])
    alerts(client, "im.alert.resolve", resolved)
    with sign_in(gateway, ADMIN_TOKEN) as c:
        first = c.get("/console/alerts", params={"status": "resolved"}).text
        link = re.search(r'<a href="([^"]+)">Older alerts</a>', first)
        assert link, "no link to older alerts"
        second = c.get("/console/alerts" + html.unescape(link.group(1))).text
        shown = keys_on(first) + keys_on(second)
        assert sorted(shown) == resolved
