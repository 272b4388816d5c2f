"""Principals API: create, list, read and revoke principals; tokens shown once, kept hashed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import redis

from incidents.app import create_app
from incidents.cli.main import main
from incidents.policy.principals import load_principal
from incidents.settings import Settings
from tests.support import (
    ADMIN_TOKEN,
    TEST_TLS,
    as_token,
    create_principal,
    event,
    serve_in_thread,
    text,
)

CE_JSON = {"Content-Type": "application/cloudevents+json"}


def test_create_returns_id_and_token_once(client: httpx.Client) -> None:
    """Creating a principal answers 201 with its id, fields and a token; reads never show it."""
    created = create_principal(
        client, name="grafana", tenant="acme", clearance="confidential", publish=["im.alert.*"]
    )
    assert created["id"].startswith("prn_")
    assert created["token"].startswith("imt_") and len(created["token"]) > 40
    assert created["roles"] == ["producer"]
    assert (created["tenant"], created["clearance"], created["restricted"]) == (
        "acme",
        "confidential",
        False,
    )
    listed = client.get("/v1/principals").json()["principals"]
    assert [p["name"] for p in listed] == ["grafana"]
    assert "token" not in listed[0]
    one = client.get(f"/v1/principals/{created['id']}").json()
    assert one["publish"] == ["im.alert.*"] and "token" not in one


def test_storage_follows_the_contract_and_keeps_only_a_hash(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """The principal hash has the contract's fields and the token appears only as SHA-256."""
    created = create_principal(
        client, name="pd", roles=["producer", "subscriber"], restricted=True, publish=["a.*", "b"]
    )
    fields = {
        text(k): text(v)
        for k, v in redis_client.hgetall(f"incidents:principal:{created['id']}").items()
    }
    digest = hashlib.sha256(created["token"].encode()).hexdigest()
    assert fields["name"] == "pd"
    assert fields["roles"] == "producer,subscriber"
    assert fields["tenant"] == "default" and fields["clearance"] == "internal"
    assert fields["restricted"] == "1" and fields["publish"] == "a.*,b"
    assert fields["token"] == digest
    assert redis_client.get(f"incidents:token:{digest}") == created["id"].encode()
    for key in redis_client.scan_iter("*"):
        kind = redis_client.type(key)
        dump = (
            json.dumps({text(k): text(v) for k, v in redis_client.hgetall(key).items()})
            if kind == b"hash"
            else str(redis_client.dump(key))
        )
        assert created["token"] not in dump and created["token"] not in key.decode()


def test_workers_read_a_principal_from_redis(client: httpx.Client, redis_url: str) -> None:
    """The sync loader that delivery uses returns the stored principal, and None once revoked."""
    created = create_principal(client, name="ops", roles=["subscriber"], tenant="acme")
    sync = redis.Redis.from_url(redis_url)
    try:
        found = load_principal(sync, created["id"])
        assert found is not None and found.tenant == "acme" and found.roles == {"subscriber"}
        assert load_principal(sync, "admin") is not None
        client.delete(f"/v1/principals/{created['id']}")
        assert load_principal(sync, created["id"]) is None
    finally:
        sync.close()


def test_token_authenticates_and_stamps_the_tenant(client: httpx.Client) -> None:
    """A producer's token publishes, and the stored event carries the producer's tenant."""
    created = create_principal(client, name="am", tenant="acme", publish=["im.incident.*"])
    ev = event()
    with as_token(client, created["token"]) as producer:
        r = producer.post("/v1/events", content=json.dumps(ev), headers=CE_JSON)
    assert r.status_code == 202, r.text
    stored = client.get(f"/v1/events/{ev['id']}").json()["event"]
    assert stored["imtenant"] == "acme"


def test_revocation_takes_effect_at_once_on_every_replica(
    client: httpx.Client, settings: Settings
) -> None:
    """After DELETE on one replica, the token is refused by another replica straight away."""
    created = create_principal(client, name="short-lived")
    with (
        serve_in_thread(create_app(settings)) as other_url,
        httpx.Client(
            verify=TEST_TLS,
            base_url=other_url,
            headers={"Authorization": f"Bearer {created['token']}"},
            timeout=10,
        ) as other,
    ):
        assert other.get("/v1/incidents").status_code == 200
        assert client.delete(f"/v1/principals/{created['id']}").status_code == 204
        r = other.get("/v1/incidents")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/principals/{created['id']}").status_code == 404


def test_unknown_principal_is_404(client: httpx.Client) -> None:
    """Reading or revoking a principal that does not exist is a 404 problem."""
    assert client.get("/v1/principals/prn_nope").status_code == 404
    assert client.delete("/v1/principals/prn_nope").status_code == 404


def test_names_are_unique(client: httpx.Client) -> None:
    """A second principal with the same name is a 409 that names the existing one."""
    first = create_principal(client, name="twice")
    r = client.post("/v1/principals", json={"name": "twice", "roles": ["subscriber"]})
    assert r.status_code == 409
    assert r.json()["existing"] == first["id"]


def test_only_admins_manage_principals(client: httpx.Client, anon: httpx.Client) -> None:
    """Without a token it is 401; with a non-admin token every principal endpoint is 403."""
    assert anon.get("/v1/principals").status_code == 401
    created = create_principal(client, name="sub", roles=["subscriber", "producer"])
    with as_token(client, created["token"]) as other:
        assert other.get("/v1/principals").status_code == 403
        assert (
            other.post("/v1/principals", json={"name": "x", "roles": ["admin"]}).status_code == 403
        )
        assert other.delete(f"/v1/principals/{created['id']}").status_code == 403


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"roles": ["producer"]}, "/name"),
        ({"name": "x", "roles": []}, "/roles"),
        ({"name": "x", "roles": ["root"]}, "/roles"),
        ({"name": "x", "roles": ["producer"], "clearance": "secret"}, "/clearance"),
        ({"name": "x", "roles": ["producer"], "tenant": "a,b"}, "/tenant"),
        ({"name": "x", "roles": ["producer"], "restricted": "yes"}, "/restricted"),
        ({"name": "x", "roles": ["producer"], "publish": "im.*"}, "/publish"),
        ({"name": "x", "roles": ["producer"], "publish": ["im alert"]}, "/publish/0"),
        ({"name": "x", "roles": ["producer"], "token": "mine"}, "/token"),
    ],
)
def test_invalid_principal_is_400_with_a_pointer(
    client: httpx.Client, body: dict[str, Any], where: str
) -> None:
    """Each invalid field is reported as a 400 problem with a JSON pointer to it."""
    r = client.post("/v1/principals", json=body)
    assert r.status_code == 400, r.text
    assert where in [e["pointer"] for e in r.json()["errors"]]


def test_cli_adds_lists_and_revokes(gateway: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`incidents principal add/list/revoke` drive the API and print what it answers."""
    flags = ["--url", gateway, "--token", ADMIN_TOKEN]
    assert (
        main(
            [
                "principal",
                "add",
                "--name",
                "cli",
                "--role",
                "producer",
                "--tenant",
                "acme",
                "--clearance",
                "confidential",
                "--restricted",
                "--publish",
                "im.alert.*",
                *flags,
            ],
            environ={},
        )
        == 0
    )
    out = capsys.readouterr()
    created = json.loads(out.out)
    assert created["restricted"] is True and created["publish"] == ["im.alert.*"]
    assert "shown only this once" in out.err
    assert main(["principal", "list", *flags], environ={}) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["principals"]] == ["cli"]
    assert main(["principal", "revoke", created["id"], *flags], environ={}) == 0
    assert created["id"] in capsys.readouterr().out
    assert main(["principal", "revoke", created["id"], *flags], environ={}) == 1
