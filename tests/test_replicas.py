"""Two API replicas on one Redis: each remembers incidents it wrote, and neither loses updates."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from incidents.app import create_app
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, TEST_TLS, event, serve_in_thread

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def test_alternating_replicas_apply_every_event_in_order(settings: Settings) -> None:
    """Notes sent to two replicas in turn, and in parallel, all count on the incident."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        serve_in_thread(create_app(settings)) as one,
        serve_in_thread(create_app(settings)) as two,
        httpx.Client(verify=TEST_TLS, base_url=one, headers=auth, timeout=20) as a,
        httpx.Client(verify=TEST_TLS, base_url=two, headers=auth, timeout=20) as b,
    ):
        declared = a.post("/v1/events", content=json.dumps(event()), headers=STRUCTURED)
        incident = declared.json()["accepted"][0]["incident"]
        for n in range(10):
            client = a if n % 2 else b
            note = event("im.incident.note", {"text": f"n{n}"}, imincidentid=incident)
            r = client.post("/v1/events", content=json.dumps(note), headers=STRUCTURED)
            assert r.status_code == 202, r.text

        def send(n: int) -> int:
            client = a if n % 2 else b
            note = event("im.incident.note", {"text": f"p{n}"}, imincidentid=incident)
            return client.post(
                "/v1/events", content=json.dumps(note), headers=STRUCTURED
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(send, range(40))) == {202}
        # A state change through one replica is seen by the other's next move.
        mitigate = event("im.incident.mitigate", {"summary": "rolled back"}, imincidentid=incident)
        assert (
            a.post("/v1/events", content=json.dumps(mitigate), headers=STRUCTURED).status_code
            == 202
        )
        again = event("im.incident.mitigate", {"summary": "twice"}, imincidentid=incident)
        r = b.post("/v1/events", content=json.dumps(again), headers=STRUCTURED)
        assert r.status_code == 409, r.text
        state = b.get(f"/v1/incidents/{incident}").json()
        assert state["status"] == "mitigated"
        assert state["version"] == 1 + 10 + 40 + 1
        timeline = a.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
        assert len(timeline) == 52
