"""Silences: a delivery that matches an active silence is not sent but logged as silenced
with the silence's id; the event is still stored and a replay after the silence sends it.
Admins silence anything, subscribers only their own subscriptions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from incidents.app import create_app
from incidents.cli.main import main
from incidents.errors import InvalidRequest
from incidents.model.cloudevent import CloudEvent
from incidents.settings import Settings
from incidents.silences.recurrence import Weekly, parse_recurrence
from incidents.silences.silence import Silence, SilenceState, parse_silence
from incidents.silences.store import SilenceCache, SilenceStore
from tests.console_support import csrf_of, sign_in
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import (
    ADMIN_TOKEN,
    TEST_TLS,
    SharedServer,
    as_token,
    assert_problem,
    create_principal,
    event,
    pointers,
    with_async_redis,
)

NOW = datetime(2026, 5, 3, 3, 0, tzinfo=UTC)  # a Sunday
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def later(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def body(**fields: Any) -> dict[str, Any]:
    """A valid silence request (an hour from now, on imservice payments), fields overridden."""
    found: dict[str, Any] = {
        "filter": {"exact": {"imservice": "payments"}},
        "ends_at": later(60),
        "comment": "database upgrade",
    }
    found.update(fields)
    return found


def weekly(**fields: Any) -> Weekly:
    raw = {"days": ["sun"], "start": "02:00", "end": "04:00", **fields}
    found, problems = parse_recurrence({"weekly": raw})
    assert problems == [] and found is not None
    return found


# --- the value: validation and time -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"filter": {"jsonpath": "$.x"}}, "/filter/jsonpath"),
        ({"filter": {"exact": {"Bad!": "x"}}}, "/filter/exact/Bad!"),
        ({"filter": []}, "/filter"),
        ({"ends_at": "tomorrow"}, "/ends_at"),
        ({"ends_at": "2026-05-03T03:00:00"}, "/ends_at"),
        ({"starts_at": "2026-05-03T05:00:00Z", "ends_at": "2026-05-03T04:00:00Z"}, "/ends_at"),
        ({"ends_at": "2026-05-03T02:00:00Z"}, "/ends_at"),
        ({"comment": ""}, "/comment"),
        ({"subscriptions": ["sub_a", "sub_a"]}, "/subscriptions/1"),
        ({"subscriptions": "sub_a"}, "/subscriptions"),
        ({"silence": True}, "/silence"),
        ({"recurrence": {"daily": {}}}, "/recurrence"),
        ({"recurrence": {"weekly": {"days": ["sunday"], "start": "02:00", "end": "04:00"}}},
         "/recurrence/weekly/days"),
        ({"recurrence": {"weekly": {"days": ["sun"], "start": "2:00", "end": "04:00"}}},
         "/recurrence/weekly/start"),
        ({"recurrence": {"weekly": {"days": ["sun"], "start": "02:00", "end": "02:00"}}},
         "/recurrence/weekly/end"),
        ({"recurrence": {"weekly": {"days": ["sun"], "start": "02:00", "end": "04:00",
                                    "timezone": "Mars/Olympus"}}}, "/recurrence/weekly/timezone"),
        ({"recurrence": {"weekly": {"days": ["sun"], "start": "02:00", "end": "04:00",
                                    "every": 2}}}, "/recurrence/weekly/every"),
    ],
)  # fmt: skip
def test_a_bad_silence_is_refused_naming_the_field(raw: dict[str, Any], where: str) -> None:
    """Each malformed field is an InvalidRequest whose JSON pointer names it."""
    fields = {"filter": {"exact": {"imservice": "payments"}}, "ends_at": "2026-05-03T05:00:00Z",
              "comment": "upgrade", **raw}  # fmt: skip
    with pytest.raises(InvalidRequest) as refused:
        parse_silence(fields, "admin", NOW)
    assert where in [e.pointer for e in refused.value.errors]


def test_a_silence_is_pending_active_then_expired() -> None:
    """Before starts_at it is pending, inside it active, from ends_at on expired; expiring it
    by hand ends it now."""
    silence = parse_silence(
        {"filter": {"prefix": {"type": "im."}}, "starts_at": "2026-05-03T04:00:00Z",
         "ends_at": "2026-05-03T06:00:00Z", "comment": "c"}, "admin", NOW,
    )  # fmt: skip
    assert silence.state(NOW) is SilenceState.PENDING
    assert silence.state(NOW + timedelta(hours=1)) is SilenceState.ACTIVE
    assert silence.state(NOW + timedelta(hours=3)) is SilenceState.EXPIRED
    ended = silence.expired(NOW + timedelta(hours=2), "alice")
    assert ended.state(NOW + timedelta(hours=2)) is SilenceState.EXPIRED
    assert ended.expired_by == "alice"
    assert Silence.from_dict(ended.to_dict()) == ended
    never = silence.expired(NOW, "bob")  # expired before it started
    assert never.state(NOW) is SilenceState.EXPIRED
    assert never.state(NOW + timedelta(hours=1)) is SilenceState.EXPIRED


def test_a_weekly_recurrence_holds_only_inside_its_windows() -> None:
    """Sundays 02:00-04:00 UTC: in at 02:00 and 03:59, out at 04:00, on Saturday, on Monday."""
    window = weekly()
    sunday = datetime(2026, 5, 3, tzinfo=UTC)
    assert window.covers(sunday.replace(hour=2))
    assert window.covers(sunday.replace(hour=3, minute=59))
    assert not window.covers(sunday.replace(hour=4))
    assert not window.covers(sunday.replace(hour=1, minute=59))
    assert not window.covers(sunday.replace(hour=3) - timedelta(days=1))
    assert not window.covers(sunday.replace(hour=3) + timedelta(days=1))


def test_a_window_that_ends_at_or_before_its_start_spans_midnight() -> None:
    """Saturday 22:00 to 02:00 holds late Saturday and early Sunday, not early Saturday."""
    window = weekly(days=["sat"], start="22:00", end="02:00")
    saturday = datetime(2026, 5, 2, tzinfo=UTC)
    assert window.covers(saturday.replace(hour=23))
    assert window.covers(saturday.replace(hour=1) + timedelta(days=1))
    assert not window.covers(saturday.replace(hour=1))
    assert not window.covers(saturday.replace(hour=2) + timedelta(days=1))


def test_a_window_is_wall_clock_time_in_its_zone() -> None:
    """02:00-04:00 in Europe/Paris (UTC+2 in May) is 00:00-02:00 UTC."""
    window = weekly(timezone="Europe/Paris")
    sunday = datetime(2026, 5, 3, tzinfo=UTC)
    assert window.covers(sunday.replace(hour=1))
    assert not window.covers(sunday.replace(hour=3))


def test_a_recurring_silence_is_pending_between_its_windows() -> None:
    """Inside starts_at..ends_at but outside a weekly window, a silence holds nothing."""
    silence = parse_silence(
        body(ends_at="2026-06-01T00:00:00Z",
             recurrence={"weekly": {"days": ["sun"], "start": "02:00", "end": "04:00"}}),
        "admin", NOW,
    )  # fmt: skip
    ev = CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "im.incident.ack",
                     "imservice": "payments"})  # fmt: skip
    assert silence.holds("sub_1", ev.attributes, NOW)
    assert not silence.holds("sub_1", ev.attributes, NOW + timedelta(hours=2))
    assert silence.state(NOW + timedelta(hours=2)) is SilenceState.PENDING


# --- the API ------------------------------------------------------------------------------


def test_an_admin_creates_reads_lists_and_expires_a_silence(client: httpx.Client) -> None:
    """POST answers 201 with the silence, its creator and state; GET and the list show it;
    DELETE expires it (kept, listed as expired, no longer active)."""
    r = client.post("/v1/silences", json=body())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"].startswith("sil_") and r.headers["location"].endswith(created["id"])
    assert (created["state"], created["created_by"]) == ("active", "admin")
    assert client.get(f"/v1/silences/{created['id']}").json() == created
    active = client.get("/v1/silences", params={"state": "active"}).json()["silences"]
    assert [s["id"] for s in active] == [created["id"]]
    expired = client.delete(f"/v1/silences/{created['id']}")
    assert expired.status_code == 200, expired.text
    assert (expired.json()["state"], expired.json()["expired_by"]) == ("expired", "admin")
    assert client.get("/v1/silences", params={"state": "active"}).json()["silences"] == []
    listed = client.get("/v1/silences").json()["silences"]
    assert [(s["id"], s["state"]) for s in listed] == [(created["id"], "expired")]


def test_metrics_count_the_silences_not_ended(client: httpx.Client) -> None:
    """``incidents_silences`` counts pending and active silences, not expired ones."""
    kept = client.post("/v1/silences", json=body()).json()
    gone = client.post("/v1/silences", json=body()).json()
    client.delete(f"/v1/silences/{gone['id']}")
    lines = client.get("/metrics").text.splitlines()
    assert "incidents_silences 1" in lines
    assert kept["state"] == "active"


def test_api_refusals_are_problems(client: httpx.Client) -> None:
    """A bad body is a 400 with pointers, an unknown id a 404, a bad state filter a 400."""
    problem = assert_problem(client.post("/v1/silences", json={"comment": ""}), 400,
                             "invalid-request")  # fmt: skip
    assert {"/filter", "/ends_at", "/comment"} <= set(pointers(problem))
    assert_problem(client.get("/v1/silences/sil_nope"), 404, "not-found")
    assert_problem(client.delete("/v1/silences/sil_nope"), 404, "not-found")
    assert_problem(client.get("/v1/silences", params={"state": "asleep"}), 400, "invalid-request")


def test_a_subscriber_silences_only_its_own_subscriptions(
    client: httpx.Client, rx: Receiver
) -> None:
    """A subscriber must name subscriptions, and only its own; it sees and expires only its
    own silences (another's is a 404); a producer may not silence at all."""
    alice = as_token(client, create_principal(client, name="alice", roles=["subscriber"])["token"])
    bob = as_token(client, create_principal(client, name="bob", roles=["subscriber"])["token"])
    producer = as_token(client, create_principal(client, name="prod")["token"])
    mine = subscribe(alice, rx, "/alice")["id"]
    theirs = subscribe(bob, rx, "/bob")["id"]
    problem = assert_problem(alice.post("/v1/silences", json=body()), 400, "invalid-request")
    assert pointers(problem) == ["/subscriptions"]
    problem = assert_problem(
        alice.post("/v1/silences", json=body(subscriptions=[mine, theirs])), 400,
        "invalid-request",
    )  # fmt: skip
    assert pointers(problem) == ["/subscriptions/1"]
    r = alice.post("/v1/silences", json=body(subscriptions=[mine]))
    assert r.status_code == 201, r.text
    silence_id = r.json()["id"]
    assert [s["id"] for s in alice.get("/v1/silences").json()["silences"]] == [silence_id]
    assert bob.get("/v1/silences").json()["silences"] == []
    assert_problem(bob.get(f"/v1/silences/{silence_id}"), 404, "not-found")
    assert_problem(bob.delete(f"/v1/silences/{silence_id}"), 404, "not-found")
    assert client.get(f"/v1/silences/{silence_id}").status_code == 200  # admins see all
    assert_problem(producer.post("/v1/silences", json=body()), 403, "forbidden")
    for c in (alice, bob, producer):
        c.close()


def test_silences_are_bounded(settings: Settings, shared_server: SharedServer) -> None:
    """Past INCIDENTS_MAX_SILENCES silences not yet ended, one more is a 409; once one is
    expired there is room again."""
    app = create_app(replace(settings, max_silences=2))
    with (
        shared_server.mounted(app) as url,
        httpx.Client(verify=TEST_TLS, base_url=url, headers=ADMIN) as admin,
    ):
        first = admin.post("/v1/silences", json=body()).json()
        assert admin.post("/v1/silences", json=body()).status_code == 201
        assert_problem(admin.post("/v1/silences", json=body()), 409, "conflict")
        admin.delete(f"/v1/silences/{first['id']}")
        assert admin.post("/v1/silences", json=body()).status_code == 201


# --- delivery -----------------------------------------------------------------------------


def silence_log(workers: Workers, client: httpx.Client, sub_id: str) -> list[dict[str, Any]]:
    return [a for a in workers.deliveries(client, sub_id) if a["outcome"] == "silenced"]


def test_a_silenced_delivery_is_logged_not_sent_and_a_replay_sends_it(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """While a silence on imservice payments is active, payments' events are not sent but
    logged as silenced with the silence's id, and still stored; search's go out. After the
    silence is expired, a replay sends the held events."""
    sub = subscribe(client, rx, "/all")
    publish(client, event(imincidentid="INC-WARM"))
    workers.run_until(lambda: len(rx.at("/all")) == 1)  # the worker's silences are loaded now
    silence = client.post("/v1/silences", json=body()).json()
    payments = {"title": "Payments down", "severity": "SEV1", "service": "payments"}
    search = {"title": "Search slow", "severity": "SEV3", "service": "search"}
    held = event(data=payments, imincidentid="INC-PAY")
    publish(client, held, event(data=search, imincidentid="INC-SEARCH"))
    workers.run_until(
        lambda: len(rx.at("/all")) == 2 and bool(silence_log(workers, client, sub["id"]))
    )
    assert [r.event["imservice"] for r in rx.at("/all")] == ["checkout", "search"]
    (logged,) = silence_log(workers, client, sub["id"])
    assert (logged["event_id"], logged["silence"]) == (held["id"], silence["id"])
    assert client.get(f"/v1/events/{held['id']}").status_code == 200  # stored all the same
    timeline = client.get("/v1/incidents/INC-PAY/timeline").json()
    assert len(timeline["timeline"]) == 1

    assert client.delete(f"/v1/silences/{silence['id']}").status_code == 200
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert client.post(f"/v1/subscriptions/{sub['id']}/replay", json={"since": since}).is_success
    workers.run_until(lambda: any(r.event["id"] == held["id"] for r in rx.at("/all")))
    assert all(r.verified for r in rx.at("/all"))


def test_a_silence_scoped_to_one_subscription_leaves_the_others(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A silence naming one subscription holds its deliveries only; another subscription gets
    the same event."""
    quiet = subscribe(client, rx, "/quiet")
    loud = subscribe(client, rx, "/loud")
    r = client.post("/v1/silences", json=body(filter={"prefix": {"type": "im."}},
                                              subscriptions=[quiet["id"]]))  # fmt: skip
    assert r.status_code == 201, r.text
    publish(client, event(imincidentid="INC-SCOPE"))
    workers.run_until(
        lambda: len(rx.at("/loud")) == 1 and bool(silence_log(workers, client, quiet["id"]))
    )
    assert rx.at("/quiet") == []
    assert silence_log(workers, client, loud["id"]) == []


def test_a_silence_with_an_sql_filter_holds_what_it_matches(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """A silence whose filter is an sql expression holds the SEV1 and SEV2 incidents of
    payments (logged as silenced); a SEV3 of payments and a SEV1 of search go out."""
    sub = subscribe(client, rx, "/sql")
    sql = "imservice = 'payments' AND imseverity IN ('SEV1', 'SEV2')"
    r = client.post("/v1/silences", json=body(filter={"sql": sql}))
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["filter"] == {"sql": sql}

    def declare(incident: str, service: str, severity: str) -> dict[str, Any]:
        data = {"title": f"{service} {severity}", "severity": severity, "service": service}
        return event(data=data, imincidentid=incident)

    held = declare("INC-SQL-1", "payments", "SEV1")
    minor = declare("INC-SQL-2", "payments", "SEV3")
    other = declare("INC-SQL-3", "search", "SEV1")
    publish(client, held, minor, other)
    workers.run_until(
        lambda: len(rx.at("/sql")) == 2 and bool(silence_log(workers, client, sub["id"]))
    )
    assert sorted(r.event["id"] for r in rx.at("/sql")) == sorted([minor["id"], other["id"]])
    (logged,) = silence_log(workers, client, sub["id"])
    assert (logged["event_id"], logged["silence"]) == (held["id"], silence["id"])


# --- the CLI ------------------------------------------------------------------------------


def run_cli(gateway: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*argv, "--url", gateway, "--token", ADMIN_TOKEN], environ={})
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_cli_adds_lists_and_expires_silences(
    gateway: str, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """`silence add` with a length and a weekly window stores it; `silence list` shows it;
    `silence expire` ends it; a bad window is refused before any request."""
    code, out = run_cli(
        gateway, capsys, "silence", "add", "--filter", '{"exact": {"imservice": "payments"}}',
        "--comment", "maintenance", "--ends", "7d", "--weekly", "sun", "--window", "02:00-04:00",
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    stored = client.get(f"/v1/silences/{created['id']}").json()
    assert stored["recurrence"] == {
        "weekly": {"days": ["sun"], "start": "02:00", "end": "04:00", "timezone": "UTC"}
    }
    ends = datetime.fromisoformat(stored["ends_at"]) - datetime.fromisoformat(stored["starts_at"])
    assert timedelta(days=6, hours=23) < ends <= timedelta(days=7)
    code, out = run_cli(gateway, capsys, "silence", "list")
    assert code == 0 and created["id"] in out and "maintenance" in out
    code, out = run_cli(gateway, capsys, "silence", "expire", created["id"])
    assert code == 0 and f"expired {created['id']}" in out
    assert client.get(f"/v1/silences/{created['id']}").json()["state"] == "expired"
    code, out = run_cli(
        gateway, capsys, "silence", "add", "--filter", "{}", "--comment", "c", "--ends", "1h",
        "--weekly", "sun", "--window", "2-4",
    )  # fmt: skip
    assert code == 2 and "--window" in out
    code, out = run_cli(gateway, capsys, "silence", "expire", "sil_nope")
    assert code == 1 and "404" in out


# --- the console --------------------------------------------------------------------------


def test_the_console_lists_creates_and_expires_silences(gateway: str, client: httpx.Client) -> None:
    """The silences page lists running silences; its form creates one (a length for the end,
    a weekly window) and its button expires one; without the CSRF token nothing changes; a
    refusal shows the problem and its pointers."""
    with sign_in(gateway, ADMIN_TOKEN) as console:
        page = console.get("/console/silences")
        assert page.status_code == 200 and "No pending or active silences" in page.text
        csrf = csrf_of(page.text)
        form = {
            "change": "create",
            "filter": '{"exact": {"imservice": "payments"}}',
            "ends_at": "2h",
            "comment": "db upgrade",
            "days": "sun",
            "window": "02:00-04:00",
        }
        refused = console.post("/console/silences", data=form)  # no CSRF token
        assert refused.status_code == 403
        assert client.get("/v1/silences").json()["silences"] == []
        created = console.post("/console/silences", data={**form, "csrf": csrf})
        assert created.status_code == 200 and "db upgrade" in created.text
        (silence,) = client.get("/v1/silences").json()["silences"]
        assert silence["recurrence"]["weekly"]["days"] == ["sun"]
        assert silence["id"] in created.text
        bad = console.post("/console/silences", data={**form, "csrf": csrf, "ends_at": "soon"})
        assert bad.status_code == 400 and "/ends_at" in bad.text
        expired = console.post(
            "/console/silences", data={"change": "expire", "id": silence["id"], "csrf": csrf}
        )
        assert expired.status_code == 200 and f"Silence {silence['id']} expired" in expired.text
        assert client.get(f"/v1/silences/{silence['id']}").json()["state"] == "expired"
        assert "No pending or active silences" in console.get("/console/silences").text


def test_silences_that_ended_long_ago_are_dropped(redis_url: str) -> None:
    """Saving a silence drops those that ended more than 30 days before; younger ones stay."""

    def ended(days_ago: int) -> Silence:
        ends = NOW - timedelta(days=days_ago)
        raw = {"filter": {"exact": {"type": "x"}}, "comment": "c", "ends_at": ends.isoformat()}
        return parse_silence(raw, "admin", ends - timedelta(hours=1))

    async def run(redis: aioredis.Redis) -> list[str]:
        store = SilenceStore(redis)
        old, young = ended(31), ended(29)
        await store.save(old, old.ends_at)
        await store.save(young, young.ends_at)
        await store.save(parse_silence(body(), "admin", NOW), NOW)
        assert await store.get(old.id) is None
        return sorted(s.id for s in await store.list())

    kept = with_async_redis(redis_url, run)
    assert len(kept) == 2


def test_a_worker_cache_follows_starts_ends_and_windows(redis_url: str) -> None:
    """The cache's active set changes exactly when a silence starts or ends and when a weekly
    window opens or closes, and a scoped silence holds only its subscriptions."""
    attrs = CloudEvent(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "im.incident.ack"}
    ).attributes
    later_one = parse_silence(
        {"filter": {"prefix": {"type": "im."}}, "comment": "later",
         "starts_at": (NOW + timedelta(hours=1)).isoformat(),
         "ends_at": (NOW + timedelta(hours=2)).isoformat()}, "admin", NOW,
    )  # fmt: skip
    weekly_one = parse_silence(
        {"filter": {"prefix": {"type": "im."}}, "comment": "sundays", "subscriptions": ["sub_x"],
         "ends_at": (NOW + timedelta(days=30)).isoformat(),
         "recurrence": {"weekly": {"days": ["sun"], "start": "02:00", "end": "04:00"}}},
        "admin", NOW,
    )  # fmt: skip

    async def run(redis: aioredis.Redis) -> list[tuple[str | None, str | None]]:
        store, cache = SilenceStore(redis), SilenceCache()
        await store.save(later_one, NOW)
        await store.save(weekly_one, NOW)
        cache.observe(await store.version())
        seen = []
        for at in (NOW, NOW + timedelta(minutes=59), NOW + timedelta(hours=1),
                   NOW + timedelta(hours=2), NOW + timedelta(days=7), NOW):  # fmt: skip
            one, x = [await cache.holding(store, sub, attrs, at) for sub in ("sub_1", "sub_x")]
            seen.append((one.id if one else None, x.id if x else None))
        return seen

    later_id, weekly_id = later_one.id, weekly_one.id
    assert with_async_redis(redis_url, run) == [
        (None, weekly_id),  # Sunday 03:00: inside the window, for sub_x only
        (None, weekly_id),  # 03:59 is inside too
        (later_id, later_id),  # 04:00: the window closed; the other silence started
        (None, None),  # 05:00: it ended
        (None, weekly_id),  # a week later, the window again
        (None, weekly_id),  # back in time: worked out again
    ]
