"""Routing and delivery on a real Redis Cluster (three primaries), three partitions: every
script and pipeline runs on the slots of its partition or of the global keys, and the
deliveries of every partition reach the sink in order per incident."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from redis.crc import key_slot

from incidents.delivery import delivery_metrics
from incidents.delivery.lanes import DeliveryStore
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.redis import connect, connect_async
from incidents.subscriptions.spec import parse_spec
from incidents.subscriptions.subscription import SubscriptionStore, new_subscription
from incidents.worker.jobs import deliver_job, job_settings
from tests.delivery_support import Receiver
from tests.partition_support import accept_in_partitions, misplaced_keys
from tests.support import event, wait_for


@pytest.fixture
def on_cluster(cluster: EmbeddedCluster, settings: Settings) -> Iterator[Settings]:
    """Settings for the test cluster with three partitions (RQ on the plain test Redis), the
    global keys named for a cluster while the test runs."""
    with keys.cluster_names():
        yield settings.replace(
            redis_url=cluster.url, queue_redis_url=settings.redis_url, partitions=3
        )


def test_deliveries_of_every_partition_reach_the_sink_in_order_on_a_cluster(
    on_cluster: Settings, rx: Receiver
) -> None:
    """Events of incidents in three partitions, spread over the cluster's primaries, are
    routed and delivered in order per incident, one failing until it is a dead letter; the
    attempt log, the dead letters and the delivery metrics read every partition; deleting
    the subscription clears its logs; every key sits in its partition's slot."""
    settings = on_cluster
    layout = settings.layout
    assert settings.redis_url is not None
    url = settings.redis_url
    data = connect(url)
    spec, _ = parse_spec({"sink": rx.sink("/cluster")})
    sub = new_subscription(spec, "admin", datetime.now(UTC))
    rx.secrets["/cluster"] = sub.secrets[0].value
    incidents = ["INC-1", "INC-2", "INC-3"]
    sent = [event("im.incident.note", imincidentid=i) for _ in range(3) for i in incidents]
    rx.scripts[sent[1]["id"]] = [(500, {})] * 4  # INC-2's first: dead after the schedule

    async def save() -> None:
        client = connect_async(url)
        try:
            await SubscriptionStore(client, layout).save(sub)
        finally:
            await client.aclose()

    asyncio.run(save())
    accept_in_partitions(data, layout, *sent)
    wanted = len(sent) + 3  # three retries of the doomed one
    wait_for(lambda: deliver_job(job_settings(settings)) >= 0 and len(rx.at("/cluster")) >= wanted)
    got = rx.at("/cluster")
    assert all(r.verified for r in got)
    for incident in incidents:
        ids = [e["id"] for e in sent if e["imincidentid"] == incident]
        if incident == "INC-2":
            ids = [ids[0]] * 4 + ids[1:]
        assert [r.event["id"] for r in got if r.event["imincidentid"] == incident] == ids

    async def reads() -> tuple[int, list[str], list[str]]:
        client = connect_async(url)
        try:
            ledger = DeliveryStore(client, layout)
            attempts = await ledger.attempts(sub.id, 100)
            dead = [d.id for d in await ledger.dead_letters(10)]
            lines = await delivery_metrics.read(client, layout)
            await SubscriptionStore(client, layout).delete(sub)
            return len(attempts), dead, lines
        finally:
            await client.aclose()

    attempts, dead, lines = asyncio.run(reads())
    assert attempts == wanted
    assert len(dead) == 1 and f"_{sub.id.removeprefix('sub_')}" in dead[0]
    assert f'incidents_deliveries_total{{subscription="{sub.id}",outcome="delivered"}} 8' in lines
    assert not any(data.exists(space.attempts(sub.id)) for space in layout)
    assert misplaced_keys(data, layout) == []
    slots = {key_slot(space.OUTBOX.encode()) for space in layout}
    assert len(slots) == 3
    data.close()
