"""The visibility table end to end: real principals, subscriptions, workers and a receiver
that checks every signature; each subscriber gets exactly what the table says, every delivery
withheld for clearance or redacted is in its delivery log with the rule, and an event withheld
for its visibility leaves no trace there (the owner may not learn that it exists)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import as_token, create_principal, event
from tests.visibility_table import (
    CASES,
    CLASSES,
    DATA,
    PRODUCER_TENANT,
    VISIBILITIES,
    Case,
    expected,
)

support = pytest.importorskip(
    "tests.delivery_support",
    reason="delivery is not in place: tests/delivery_support.py (receiver, workers)",
)

CE_JSON = {"Content-Type": "application/cloudevents+json"}


def subscriber_name(same: bool, clearance: str, restricted: bool) -> str:
    return f"{'same' if same else 'other'}-{clearance}-{'ra' if restricted else 'nora'}"


def logged(case: Case, name: str) -> bool:
    """Whether the case leaves an entry in the log of subscriber ``name``."""
    _, _, same, clearance, restricted = case
    outcome, detail = expected(case)
    mine = subscriber_name(same, clearance, restricted) == name
    return mine and not (outcome == "withhold" and str(detail).startswith("visibility-"))


def test_every_combination_end_to_end(client: httpx.Client, workers: Any) -> None:
    """192 (event, subscriber) pairs through the real gateway, workers and receiver: each
    subscriber receives exactly the events and fields the table allows, signed, the delivery
    log names the rule for every one withheld for clearance or redacted, and says nothing of
    those withheld for visibility."""
    tokens: dict[str, str] = {}
    sub_ids: dict[str, str] = {}
    with support.receiver() as rx:
        for same in (True, False):
            for clearance in CLASSES:
                for restricted in (True, False):
                    name = subscriber_name(same, clearance, restricted)
                    created = create_principal(
                        client,
                        name=name,
                        roles=["subscriber"],
                        tenant=PRODUCER_TENANT if same else "globex",
                        clearance=clearance,
                        restricted=restricted,
                    )
                    tokens[name] = created["token"]
                    with as_token(client, created["token"]) as owner:
                        sub = support.subscribe(
                            owner,
                            rx,
                            f"/sink/{name}",
                            protocol="HTTP",
                            types=["im.incident.declare"],
                        )
                    sub_ids[name] = sub["id"]
        producer = create_principal(
            client, name="producer", tenant=PRODUCER_TENANT, clearance="restricted"
        )
        ids: dict[tuple[str, str], str] = {}
        with as_token(client, producer["token"]) as p:
            for data_class in CLASSES:
                for visibility in VISIBILITIES:
                    ev = event(
                        "im.incident.declare",
                        dict(DATA),
                        imdataclass=data_class,
                        imvisibility=visibility,
                    )
                    r = p.post("/v1/events", content=json.dumps(ev), headers=CE_JSON)
                    assert r.status_code == 202, r.text
                    ids[(data_class, visibility)] = ev["id"]
        logs: dict[str, list[dict[str, Any]]] = {}

        def every_event_judged() -> bool:
            for name, sub_id in sub_ids.items():
                with as_token(client, tokens[name]) as owner:
                    logs[name] = workers.deliveries(owner, sub_id)
                judged = {e.get("event_id") for e in logs[name]}
                if len(judged) < sum(1 for c in CASES if logged(c, name)):
                    return False
            return True

        workers.run_until(every_event_judged, timeout=40)
        workers.run_until(lambda: not workers.scheduler.pending(), timeout=20)
        for name, sub_id in sub_ids.items():
            with as_token(client, tokens[name]) as owner:
                logs[name] = workers.deliveries(owner, sub_id)
        received = list(rx.received)

    assert [r.path for r in received if not r.verified] == []
    got_at: dict[str, dict[str, dict[str, Any]]] = {}
    for r in received:
        got_at.setdefault(r.path.rsplit("/", 1)[1], {})[r.event["id"]] = r.event
    mismatches: list[tuple[Case, str]] = []
    for case in CASES:
        data_class, visibility, same, clearance, restricted = case
        name = subscriber_name(same, clearance, restricted)
        event_id = ids[(data_class, visibility)]
        got = got_at.get(name, {}).get(event_id)
        log = [e for e in logs[name] if e.get("event_id") == event_id]
        outcome, detail = expected(case)
        if outcome == "withhold":
            hidden = str(detail).startswith("visibility-")
            if got is not None:
                mismatches.append((case, f"delivered, expected withheld by {detail}"))
            elif hidden and log:
                mismatches.append((case, f"log {log} reveals an event withheld by {detail}"))
            elif not hidden and [(e["outcome"], e.get("rule")) for e in log] != [
                ("withheld", detail)
            ]:
                mismatches.append((case, f"log {log}, expected withheld by {detail}"))
            continue
        if got is None:
            mismatches.append((case, "withheld, expected delivery"))
            continue
        fields = {k for k in DATA if f"/{k}" not in detail}
        if set(got["data"]) != fields or got.get("imredacted", "") != ",".join(detail):
            mismatches.append((case, f"got {sorted(got['data'])} {got.get('imredacted')!r}"))
        if detail and not any(
            e.get("rule") == "field-clearance" and e.get("redacted") == list(detail) for e in log
        ):
            mismatches.append((case, f"log {log} does not record the redaction"))
    assert mismatches == [], "\n".join(f"{c}: {why}" for c, why in mismatches[:20])
    # Delivery is at least once: a retry may repeat a delivery, never change it.
    unique = {(r.path, r.body) for r in received}
    delivered = sum(1 for c in CASES if expected(c)[0] == "deliver")
    assert len({path for path, _ in unique}) <= len(sub_ids)
    assert len({(path, json.loads(body)["id"]) for path, body in unique}) == len(unique)
    assert len(unique) == delivered
