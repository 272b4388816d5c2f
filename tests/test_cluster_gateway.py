"""Whole gateways on the real Redis Cluster: ``incidents serve`` and ``incidents worker``
processes with the data on ``redis+cluster://`` in six partitions, RQ on a plain Redis of its
own, and ``INCIDENTS_MIN_REPLICAS=1``. Events are delivered once each, in order per incident;
a worker's crash, a primary's crash under load and the loss of the queue Redis lose no event
answered 202; a deployment moves onto a cluster with ``incidents export`` and ``import``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from incidents.cli.main import main
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded import EmbeddedRedis
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.keys import Partitions
from incidents.store.redis import connect
from tests.cluster_support import (
    ClusterGateway,
    cluster_gateway,
    cluster_processes,
    on_cluster,
    slot_tag,
    stray_keys,
)
from tests.cluster_support import cluster_keys as all_keys
from tests.delivery_support import Receiver, publish, subscribe
from tests.support import event, wait_for
from tests.test_export_import import build_history, everything, run
from tests.test_queue_redis import queue_redis  # noqa: F401 (a fixture: importing it applies it)
from tests.test_sentinel_failover import Load, _delivered, _reused_webhook_ids
from tests.test_worker_resilience import delivered

PARTITIONS = 6
PATH = "/ha"  # the sink path test_sentinel_failover's readers (_delivered, ...) look at

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def cluster_settings(
    settings: Settings,
    cluster: EmbeddedCluster,
    queue_redis: EmbeddedRedis,  # noqa: F811 (the fixture imported above)
) -> Settings:
    """The test settings with the data on the cluster and RQ on a throwaway plain Redis."""
    return settings.replace(
        redis_url=cluster.url,
        queue_redis_url=queue_redis.url,
        partitions=PARTITIONS,
        min_replicas=1,
        retry_schedule=(0.5, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0),
    )


@pytest.fixture
def gateway_on_cluster(cluster_settings: Settings, tmp_path: Path) -> Iterator[ClusterGateway]:
    with cluster_processes(cluster_settings, tmp_path / "logs") as found:
        yield found


def _in_order(rx: Receiver, sent: dict[str, list[str]]) -> list[str]:
    """The incidents whose events did not arrive in the order they were sent."""
    got = _delivered(rx)
    return [i for i, ids in sent.items() if [e for e in got.get(i, []) if e in ids] != ids]


def _sent(*batches: list[dict[str, object]]) -> dict[str, list[str]]:
    """Per incident, the ids of its events in the order they were sent."""
    found: dict[str, list[str]] = {}
    for batch in batches:
        for e in batch:
            found.setdefault(str(e["imincidentid"]), []).append(str(e["id"]))
    return found


def _partitions_used(cluster: EmbeddedCluster) -> set[str]:
    return {t for k in all_keys(cluster) if (t := slot_tag(k)) and t.startswith("p")}


def test_events_are_delivered_once_each_in_order_per_incident(
    gateway_on_cluster: ClusterGateway, cluster: EmbeddedCluster, rx: Receiver
) -> None:
    """Batches spanning every partition are stored and delivered signed, once each, each
    incident's events in the order sent; a batch sent again is answered as duplicates and not
    delivered again; every key is in a partition's slot or the global one."""
    gateway_on_cluster.serve()
    gateway_on_cluster.worker()
    with gateway_on_cluster.admin() as admin:
        subscribe(admin, rx, PATH, types=["im.incident.*"])
        incidents = [f"CL-{i}" for i in range(18)]
        declares = [event("im.incident.declare", imincidentid=i) for i in incidents]
        notes = [event("im.incident.note", imincidentid=i) for i in incidents]
        later = [event("im.incident.note", imincidentid=i) for i in incidents]
        for batch in (declares, notes, later):
            assert len(publish(admin, *batch)) == len(batch)
        again = admin.post(
            "/v1/events",
            json=notes,
            headers={"Content-Type": "application/cloudevents-batch+json"},
        )
        assert again.status_code == 200, again.text
        sent = _sent(declares, notes, later)
        every = {e for ids in sent.values() for e in ids}
        wait_for(lambda: every <= delivered(rx, PATH), 120, what="every event delivered")
    assert _in_order(rx, sent) == []
    assert _reused_webhook_ids(rx) == {}
    arrivals = [r.event["id"] for r in rx.at(PATH)]
    assert sorted(arrivals) == sorted(every), "each event delivered once"
    assert _partitions_used(cluster) == {
        keys.partition_tag(n, PARTITIONS) for n in range(PARTITIONS)
    }
    assert stray_keys(cluster, PARTITIONS) == []


def test_a_worker_killed_mid_delivery_leaves_its_work_to_another(
    gateway_on_cluster: ClusterGateway, rx: Receiver
) -> None:
    """A worker SIGKILLed while a sink is answering: the next worker sends that delivery
    again under the same webhook-id, and routes and delivers the partitions the dead one
    held once its leases run out."""
    gateway_on_cluster.serve()
    gateway_on_cluster.worker("first")
    with gateway_on_cluster.admin() as admin:
        subscribe(admin, rx, PATH)
        rx.delay = 5.0
        publish(admin, event("im.incident.declare", imincidentid="KILL-0"))
        wait_for(lambda: len(rx.at(PATH)) == 1, 60, what="the first delivery under way")
        gateway_on_cluster.kill("first")
        rx.delay = 0.0
        gateway_on_cluster.worker("second")
        wait_for(lambda: len(rx.at(PATH)) >= 2, 90, what="the delivery sent again")
        one, two = rx.at(PATH)[:2]
        assert one.headers["webhook-id"] == two.headers["webhook-id"]
        more = [event("im.incident.declare", imincidentid=f"KILL-{i}") for i in range(1, 13)]
        publish(admin, *more)
        ids = {str(e["id"]) for e in more}
        wait_for(lambda: ids <= delivered(rx, PATH), 120, what="the later events delivered")
    assert gateway_on_cluster.alive()["second"], gateway_on_cluster.log("second")


def _primary_of(cluster: EmbeddedCluster, key: str) -> EmbeddedRedis:
    """The node of ``cluster`` that serves ``key``'s slot now."""
    client = connect(cluster.url)
    try:
        node = client.get_node_from_key(key)  # type: ignore[attr-defined]  # RedisCluster's
    finally:
        client.close()
    return next(n for n in cluster.nodes if n.port == int(node.port))


def test_a_primary_killed_under_load_loses_no_acknowledged_event(
    gateway_on_cluster: ClusterGateway, cluster: EmbeddedCluster, rx: Receiver
) -> None:
    """Two API processes and two workers under steady load; the primary holding the first
    incident's partition is SIGKILLed and its replica takes over: only 503s meanwhile (for
    that primary's partitions; the others keep accepting), the first incident is accepted
    again once the old primary is back as a replica, and every event answered 202 is
    readable and delivered, once, in order per incident."""
    gw = gateway_on_cluster
    urls = [gw.serve("api-0"), gw.serve("api-1")]
    gw.worker("worker-0")
    gw.worker("worker-1")
    with gw.admin() as admin:
        subscribe(admin, rx, PATH, types=["im.incident.*"])
    victim = _primary_of(cluster, Partitions(PARTITIONS, tagged=True).of_incident("HA-0").SEQUENCE)
    load = Load(urls)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(rx.at(PATH)) >= 12, 90, what="deliveries before the kill")
        held = len(load.acknowledged.get("HA-0", []))  # HA-0 is in a partition of the victim
        killed_at = time.monotonic()
        killed, _ = cluster.kill_primary(victim)
        took_over = time.monotonic() - killed_at
        # With INCIDENTS_MIN_REPLICAS=1 the new primary accepts once it has a replica again:
        # the old one, back (as a restart policy brings it), rejoins as its replica.
        cluster.restart(killed)
        wait_for(
            lambda: len(load.acknowledged.get("HA-0", [])) > held + 1,
            90,
            what="HA-0 accepted again, on the new primary",
        )
        back = time.monotonic() - killed_at
        settled = time.monotonic() + 2  # steady load on the new primary
        wait_for(lambda: time.monotonic() > settled, 10, what="a moment of load")
    finally:
        load.stop.set()
        thread.join(30)
    acknowledged = dict(load.acknowledged)
    every = {e for ids in acknowledged.values() for e in ids}
    with gw.admin(urls[1]) as reader:
        unreadable = {e for e in every if reader.get(f"/v1/events/{e}").status_code != 200}
    assert unreadable == set()
    wait_for(
        lambda: every <= {e for ids in _delivered(rx).values() for e in ids},
        120,
        what="every acknowledged event delivered",
    )
    answers = [s for _, s in load.answers]
    statuses = {s: answers.count(s) for s in set(answers)}
    print(
        f"\nprimary {victim.port} killed: {len(every)} events acknowledged, answers {statuses};"
        f" its replica serving {took_over:.2f} s after the kill, HA-0 accepted again by"
        f" {back:.2f} s"
    )
    assert set(statuses) <= {200, 202, 503}, (statuses, gw.log("api-0"))
    assert _in_order(rx, acknowledged) == []
    assert _reused_webhook_ids(rx) == {}
    assert all(gw.alive().values()), gw.alive()


def test_losing_the_queue_redis_loses_no_event(
    gateway_on_cluster: ClusterGateway,
    rx: Receiver,
    queue_redis: EmbeddedRedis,  # noqa: F811 (the fixture imported above)
) -> None:
    """The queue Redis killed and started again empty: every event answered 202 before,
    while it is down and after is delivered, the jobs RQ held rebuilt from the cluster."""
    gateway_on_cluster.serve()
    gateway_on_cluster.worker()
    with gateway_on_cluster.admin() as admin:
        subscribe(admin, rx, PATH)
        rx.scripts[PATH] = [(500, {})]  # a retry is due when the queue Redis goes
        first = [event("im.incident.declare", imincidentid=f"Q-{i}") for i in range(6)]
        acknowledged = {a["id"] for a in publish(admin, *first)}
        wait_for(lambda: len(rx.at(PATH)) >= 1, 60, what="the first attempt")
        queue_redis.kill()
        down = [event("im.incident.declare", imincidentid=f"D-{i}") for i in range(6)]
        acknowledged |= {a["id"] for a in publish(admin, *down)}  # the API needs no RQ
        queue_redis.start()  # empty: every job it held is gone
        after = [event("im.incident.declare", imincidentid=f"A-{i}") for i in range(6)]
        acknowledged |= {a["id"] for a in publish(admin, *after)}
        wait_for(
            lambda: acknowledged <= delivered(rx, PATH) or not gateway_on_cluster.alive()["worker"],
            180,
            what="every acknowledged event delivered",
        )
    assert gateway_on_cluster.alive()["worker"], gateway_on_cluster.log("worker")
    assert acknowledged <= delivered(rx, PATH)


def test_the_admin_client_reads_from_every_api(gateway_on_cluster: ClusterGateway) -> None:
    """Two API processes on one cluster serve the same data: an event posted to one is read
    from the other."""
    gw = gateway_on_cluster
    first, second = gw.serve("api-0"), gw.serve("api-1")
    with gw.admin(first) as one, gw.admin(second) as two:
        posted = publish(one, event("im.incident.declare", imincidentid="TWO-1"))[0]["id"]
        found = two.get(f"/v1/events/{posted}")
        assert found.status_code == 200, found.text
        assert found.json()["event"]["id"] == posted


def test_a_deployment_moves_onto_the_cluster_by_export_and_import(
    client: httpx.Client,
    settings: Settings,
    cluster: EmbeddedCluster,
    queue_redis: EmbeddedRedis,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A one-partition deployment on one Redis, exported and imported into a cluster with six
    partitions, reads back the same there: every incident, each timeline in its order, every
    alert and event; and every key is in a partition's slot or the global one."""
    sent = build_history(client)
    before = everything(client, sent)
    exported = tmp_path / "move.jsonl.gz"
    run(["export", "--output", str(exported)], str(settings.redis_url), capsys)
    into = {
        "INCIDENTS_REDIS_URL": cluster.url,
        "INCIDENTS_QUEUE_REDIS_URL": queue_redis.url,
        "INCIDENTS_PARTITIONS": str(PARTITIONS),
    }
    assert main(["import", str(exported)], environ=into) == 0, capsys.readouterr().err
    with cluster_gateway(on_cluster(settings, cluster, PARTITIONS)) as moved:
        after = everything(moved, sent)
    ids = sorted(i["id"] for i in before["incidents"])
    assert sorted(i["id"] for i in after["incidents"]) == ids
    for incident in ids:
        assert after[incident]["title"] == before[incident]["title"]
        timeline = [e["id"] for e in after[incident + "/timeline"]["timeline"]]
        assert timeline == [e["id"] for e in before[incident + "/timeline"]["timeline"]]
    assert after["alerts"]["alerts"] == before["alerts"]["alerts"]
    for event_id in sent:
        assert after[event_id]["event"] == before[event_id]["event"]
    assert stray_keys(cluster, PARTITIONS) == []
