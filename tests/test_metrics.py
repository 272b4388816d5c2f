"""GET /metrics: Prometheus text that counts what the gateway did."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from incidents.app import create_app
from incidents.errors import InvalidRequest
from incidents.metrics import Metrics
from incidents.settings import Settings
from incidents.store.events import Accepted
from incidents.usecases.event_submission import Submitted
from incidents.worker.process import make_worker
from tests.delivery_support import Receiver, Workers, publish, start_worker, subscribe
from tests.support import ADMIN_TOKEN, TEST_TLS, event, serve_in_thread, wait_for


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?")
    found = re.search(r"^" + pattern + r" (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_events_and_the_outbox(client: httpx.Client) -> None:
    """Accepted and rejected events, request counts and the outbox length are exposed."""
    headers = {"Content-Type": "application/cloudevents+json"}
    for _ in range(3):
        assert (
            client.post("/v1/events", content=json.dumps(event()), headers=headers).status_code
            == 202
        )
    assert client.post("/v1/events", content=b"{", headers=headers).status_code == 400
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert sample(text, "incidents_events_total", 'outcome="accepted"') == 3
    assert sample(text, "incidents_events_total", 'outcome="rejected:malformed-json"') == 1
    assert sample(text, "incidents_outbox_length") == 3
    assert (
        sample(
            text, "incidents_http_requests_total", 'method="POST",route="/v1/events",status="202"'
        )
        == 3
    )
    assert sample(text, "incidents_http_request_seconds_count", 'route="/v1/events"') == 4


def test_one_submission_counts_its_events_or_its_refusal() -> None:
    """Accepted and duplicate events of a submission are counted, a refusal once by its kind
    (and raised on), whichever door submitted."""
    counts = Metrics()
    made = [Accepted(f"e{n}", "/s", n, n == 2, None) for n in range(3)]
    with counts.counting_events() as counted:
        done = Submitted.of(made)
        assert counted(done) is done
    with pytest.raises(InvalidRequest), counts.counting_events():
        raise InvalidRequest("no")
    assert counts.events == {"accepted": 2, "duplicate": 1, "rejected:invalid-request": 1}


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A sink that takes connections and never answers: every delivery to it times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


class Scraper:
    """Polls /metrics in a thread while the test's main thread runs a worker."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.stop = threading.Event()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.seen.append(self.client.get("/metrics").text)
            self.stop.wait(0.02)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.slow
def test_delivery_gauges_follow_a_lane_to_a_dead_letter(settings: Settings, blackhole: str) -> None:
    """Subscriptions, lanes due now, leased and due later, then dead letters, move as one
    event to a sink that never answers is routed, tried, retried and given up."""
    settings = replace(settings, retry_schedule=(1.5,), delivery_timeout=0.5)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    workers = Workers(settings)
    with (
        serve_in_thread(create_app(settings)) as url,
        httpx.Client(verify=TEST_TLS, base_url=url, headers=headers, timeout=10) as client,
    ):

        def gauges() -> tuple[float, ...]:
            return read_gauges(client.get("/metrics").text)

        try:
            assert gauges() == (0, 0, 0, 0, 0)
            created = client.post("/v1/subscriptions", json={"sink": blackhole})
            assert created.status_code == 201, created.text
            publish(client, event("im.incident.declare", imincidentid="INC-7"))
            assert gauges() == (1, 0, 0, 0, 0)
            work_once(workers)  # only the routing job: the scheduler saw no lane yet
            assert gauges() == (1, 1, 0, 0, 0)
            with Scraper(client) as scraper:
                work_once(workers)  # the first attempt: leased until it times out
            assert (1, 0, 0, 1, 0) in [read_gauges(text) for text in scraper.seen]
            assert gauges() == (1, 0, 1, 0, 0)
            workers.run_until(lambda: gauges()[4] == 1)
            assert gauges() == (1, 0, 0, 0, 1)
        finally:
            workers.close()


def read_gauges(text: str) -> tuple[float, ...]:
    """(subscriptions, lanes due now, lanes due later, lanes leased, dead letters)."""
    return (
        sample(text, "incidents_subscriptions"),
        sample(text, "incidents_lanes_due", 'when="now"'),
        sample(text, "incidents_lanes_due", 'when="later"'),
        sample(text, "incidents_lanes_leased"),
        sample(text, "incidents_dead_letters"),
    )


def work_once(workers: Workers) -> None:
    workers.scheduler.step()
    make_worker(workers.settings, workers.connection, workers.context).work(
        burst=True, logging_level="WARNING"
    )


def test_the_outbox_gauge_counts_what_is_not_routed_yet(
    client: httpx.Client, workers: Workers
) -> None:
    """Once routed, events leave the backlog gauge but stay counted as retained."""
    headers = {"Content-Type": "application/cloudevents+json"}
    for _ in range(3):
        r = client.post("/v1/events", content=json.dumps(event()), headers=headers)
        assert r.status_code == 202
    before = client.get("/metrics").text
    assert sample(before, "incidents_outbox_length") == 3
    workers.run_until(lambda: sample(client.get("/metrics").text, "incidents_outbox_length") == 0)
    assert sample(client.get("/metrics").text, "incidents_outbox_retained") == 3


def test_deliveries_are_counted_and_timed_per_subscription(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """Each attempt counts under its subscription and outcome and is timed in the latency
    histogram; a disabled subscription shows 1; a deleted one's series go."""
    sub = subscribe(client, rx, "/counted")["id"]
    other = subscribe(client, rx, "/gone")["id"]
    rx.scripts["/counted"] = [(503, {})]
    rx.scripts["/gone"] = [(410, {})]
    publish(client, event())
    workers.run_until(lambda: len(rx.at("/counted")) == 2 and len(rx.at("/gone")) == 1)
    text = client.get("/metrics").text
    own = f'subscription="{sub}"'
    assert sample(text, "incidents_deliveries_total", own + ',outcome="failed"') == 1
    assert sample(text, "incidents_deliveries_total", own + ',outcome="delivered"') == 1
    assert sample(text, "incidents_delivery_seconds_count", own) == 2
    assert sample(text, "incidents_delivery_seconds_bucket", own + ',le="+Inf"') == 2
    assert sample(text, "incidents_delivery_seconds_bucket", own + ',le="10.0"') == 2
    assert 0 < sample(text, "incidents_delivery_seconds_sum", own) < 20
    assert sample(text, "incidents_subscription_disabled", own) == 0
    gone = f'subscription="{other}"'
    assert sample(text, "incidents_deliveries_total", gone + ',outcome="gone"') == 1
    assert sample(text, "incidents_subscription_disabled", gone) == 1
    assert client.delete(f"/v1/subscriptions/{other}").status_code == 204
    text = client.get("/metrics").text
    assert other not in text and sub in text


def test_metrics_answer_without_redis_and_count_its_errors(settings: Settings) -> None:
    """With Redis out of reach /metrics still answers, with incidents_redis_up 0 and the
    requests refused for it counted in incidents_redis_errors_total."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        serve_in_thread(create_app(down)) as url,
        httpx.Client(verify=TEST_TLS, base_url=url, headers=headers, timeout=10) as client,
    ):
        answer = client.post("/v1/subscriptions", json={"sink": "http://127.0.0.1:1/x"})
        assert answer.status_code == 503, answer.text
        scraped = client.get("/metrics")
        assert scraped.status_code == 200
        assert sample(scraped.text, "incidents_redis_up") == 0
        assert sample(scraped.text, "incidents_redis_errors_total") == 1
        assert "incidents_outbox_length" not in scraped.text


def test_live_workers_are_counted(settings: Settings, client: httpx.Client) -> None:
    """incidents_workers counts the delivery workers that are running."""
    assert sample(client.get("/metrics").text, "incidents_workers") == 0
    worker = start_worker(settings)
    try:
        wait_for(lambda: sample(client.get("/metrics").text, "incidents_workers") == 1, 60,
                 what="the worker counted")  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(30)
