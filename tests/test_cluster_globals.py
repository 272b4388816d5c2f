"""The deployment-wide data on a Redis Cluster: subscriptions and their routing index,
principals, silences, console sessions, sync maps and readiness all under the ``{g}`` tag,
each multi-key write on one slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from incidents.app import create_app
from incidents.connectors.sync_memory import SyncMemory
from incidents.settings import Settings
from incidents.store import keys
from incidents.store.embedded_cluster import EmbeddedCluster
from incidents.store.redis import connect, connect_async
from incidents.store.redis_memory import refuses_writes, refuses_writes_async
from tests.cluster_support import cluster_gateway, on_cluster, stray_keys
from tests.console_support import csrf_of, sign_in
from tests.support import ADMIN_TOKEN, TEST_TLS, as_token, create_principal, serve_in_thread

pytestmark = pytest.mark.slow


def _members(client: redis.Redis, key: str) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else m for m in client.smembers(key)}


def test_subscriptions_are_created_moved_in_the_routing_index_and_deleted(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """Creating, retyping and deleting a subscription on a cluster updates its hash, the
    owner's set and the routing index together (one slot), and leaves no stray key."""
    with cluster_gateway(on_cluster(settings, cluster)) as api:
        sink = "http://127.0.0.1:9/hook"
        r = api.post("/v1/subscriptions", json={"sink": sink, "types": ["im.incident.*"]})
        assert r.status_code == 201, r.text
        sub = r.json()["id"]
        data = connect(cluster.url)
        try:
            assert sub in _members(data, keys.SUBSCRIPTIONS)
            assert sub in _members(data, keys.route_prefix("im.incident."))
            r = api.patch(f"/v1/subscriptions/{sub}", json={"types": ["im.alert.fired"]})
            assert r.status_code == 200, r.text
            assert sub not in _members(data, keys.route_prefix("im.incident."))
            assert sub in _members(data, keys.route_exact("im.alert.fired"))
            assert api.get(f"/v1/subscriptions/{sub}").json()["types"] == ["im.alert.fired"]
            assert api.delete(f"/v1/subscriptions/{sub}").status_code == 204
            assert api.get(f"/v1/subscriptions/{sub}").status_code == 404
            assert sub not in _members(data, keys.SUBSCRIPTIONS)
            assert sub not in _members(data, keys.route_exact("im.alert.fired"))
        finally:
            data.close()
    assert stray_keys(cluster, 6) == []


def test_principals_are_created_used_and_revoked(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """A principal created on a cluster authenticates with its token, a second of the same
    name is refused, and once revoked its token is refused."""
    with cluster_gateway(on_cluster(settings, cluster)) as api:
        created = create_principal(api, name="reader", roles=["subscriber"])
        twice = api.post("/v1/principals", json={"name": "reader", "roles": ["subscriber"]})
        assert twice.status_code == 409, twice.text
        with as_token(api, created["token"]) as reader:
            assert reader.get("/v1/subscriptions").status_code == 200
            assert api.delete(f"/v1/principals/{created['id']}").status_code == 204
            assert reader.get("/v1/subscriptions").status_code == 401
        names = [p["name"] for p in api.get("/v1/principals").json()["principals"]]
        assert "reader" not in names
    assert stray_keys(cluster, 6) == []


def test_silences_are_created_listed_and_expired(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """A silence on a cluster is stored, listed as active, and expired by DELETE."""
    body = {
        "filter": {"exact": {"imservice": "payments"}},
        "ends_at": "2999-01-01T00:00:00Z",
        "comment": "database upgrade",
    }
    with cluster_gateway(on_cluster(settings, cluster)) as api:
        r = api.post("/v1/silences", json=body)
        assert r.status_code == 201, r.text
        made = r.json()["id"]
        active = api.get("/v1/silences", params={"state": "active"}).json()["silences"]
        assert [s["id"] for s in active] == [made]
        assert api.delete(f"/v1/silences/{made}").status_code in (200, 204)
        assert api.get(f"/v1/silences/{made}").json()["state"] == "expired"
    assert stray_keys(cluster, 6) == []


def test_a_console_session_signed_out_stays_ended(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """Signing out of the console on a cluster ends the session: its copied cookie is
    refused afterwards."""
    import httpx

    with keys.cluster_names(), serve_in_thread(create_app(on_cluster(settings, cluster))) as url:
        with sign_in(url, ADMIN_TOKEN) as c:
            page = c.get("/console/subscriptions")
            assert page.status_code == 200, page.text
            copied = c.cookies["incidents_session"]
            assert c.post("/console/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
        with httpx.Client(
            verify=TEST_TLS, base_url=url, cookies={"incidents_session": copied}
        ) as thief:
            assert thief.get("/console/subscriptions").status_code == 303


def test_sync_maps_remember_and_find_records(cluster: EmbeddedCluster, settings: Settings) -> None:
    """What two-way sync remembers (seen values, record -> incident) is written together on
    a cluster and read back, and a record is found through a partition's channel state."""
    layout = on_cluster(settings, cluster).layout

    async def run() -> tuple[dict[str, str], str | None, str | None]:
        client = connect_async(cluster.url)
        try:
            memory = SyncMemory(client, layout)
            await memory.remember("sub_1", "INC-4", "PD-9", {"status": "resolved"})
            space = layout.of_incident("INC-7")
            await client.hset(space.channel_state("sub_1"), "INC-7", b'{"external_id":"PD-7"}')
            return (
                await memory.seen("sub_1", "INC-4"),
                await memory.incident_of("sub_1", "PD-9"),
                await memory.incident_of("sub_1", "PD-7"),
            )
        finally:
            await client.aclose()

    with keys.cluster_names():
        seen, remembered, from_state = asyncio.run(run())
    assert seen == {"status": "resolved"}
    assert (remembered, from_state) == ("INC-4", "INC-7")
    assert stray_keys(cluster, 6) == []


@contextmanager
def _full(port: int) -> Iterator[None]:
    """One node refusing writes (maxmemory below what it uses) until the block ends."""
    with redis.Redis(port=port) as node:
        node.config_set("maxmemory", 1)
        try:
            yield
        finally:
            node.config_set("maxmemory", 0)


def test_readiness_asks_every_primary_and_a_full_one_is_not_ready(
    cluster: EmbeddedCluster, settings: Settings
) -> None:
    """/readyz on a cluster is 200 (and /metrics says Redis is up) while every primary takes
    writes; any one primary full makes it 503 redis-full, and the write probe says so on both
    clients."""
    with cluster_gateway(on_cluster(settings, cluster)) as api:
        assert api.get("/readyz").status_code == 200
        assert "incidents_redis_up 1" in api.get("/metrics").text.splitlines()
        blocking = connect(cluster.url)
        try:
            assert refuses_writes(blocking) is False
            for primary in cluster.primaries():
                with _full(primary.port):
                    r = api.get("/readyz")
                    assert r.status_code == 503 and "redis-full" in r.text, r.text
                    assert refuses_writes(blocking) is True

                    async def probe() -> bool:
                        client = connect_async(cluster.url)
                        try:
                            return await refuses_writes_async(client)
                        finally:
                            await client.aclose()

                    assert asyncio.run(probe()) is True
            assert api.get("/readyz").status_code == 200
        finally:
            blocking.close()


def test_pipelines_take_commands_of_several_keys_and_scripts_on_one_slot(
    cluster: EmbeddedCluster,
) -> None:
    """On a cluster, a pipeline of either client runs MGET and SUNION on keys of one slot
    and a registered script (by its text, so a primary that never loaded it runs it too),
    answering as on one Redis; keys of two slots are still refused."""
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    blocking = connect(cluster.url)
    try:
        blocking.script_flush()
        blocking.sadd("{g}a", "1")
        blocking.sadd("{g}b", "2")
        pipe = blocking.pipeline(transaction=False)
        pipe.mget(["{g}n", "{g}m"])
        pipe.sunion(["{g}a", "{g}b"])
        blocking.register_script(script)(keys=["{g}n"], args=[2], client=pipe)
        assert pipe.execute() == [[None, None], {b"1", b"2"}, 2]
        with pytest.raises(redis.exceptions.RedisClusterException):
            crossing = blocking.pipeline(transaction=False)
            crossing.mget(["{g}n", "{p1}n"])
            crossing.execute()
    finally:
        blocking.close()

    async def run() -> list[object]:
        client = connect_async(cluster.url)
        try:
            await client.script_flush()
            pipe = client.pipeline(transaction=True)
            pipe.sunion(["{g}a", "{g}b"])
            await client.register_script(script)(keys=["{g}n"], args=[3], client=pipe)
            pipe.mget(["{g}n"])
            return list(await pipe.execute())
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [{b"1", b"2"}, 5, [b"5"]]
