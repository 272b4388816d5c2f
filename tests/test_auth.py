"""Bearer-token authentication: the admin token, stored principals, and refusals."""

from __future__ import annotations

import asyncio
import re

import httpx
import redis
from starlette.routing import Route

from incidents.api.toolkit.authentication import Authenticator
from incidents.app import create_app
from incidents.errors import Unauthorized
from incidents.model.principal import Principal, token_hash
from incidents.settings import Settings
from tests.support import ADMIN_TOKEN, as_token, create_principal


def test_admin_token_resolves_to_the_admin() -> None:
    """The configured admin token resolves to the built-in admin with full clearance."""
    found = asyncio.run(Authenticator(ADMIN_TOKEN).resolve(ADMIN_TOKEN))
    assert found.is_admin and found.clearance == "restricted" and found.restricted


def test_unknown_token_is_unauthorized() -> None:
    """A token that is neither the admin's nor a principal's raises Unauthorized."""

    async def lookup(token: str) -> Principal | None:
        return None

    auth = Authenticator(ADMIN_TOKEN, lookup)
    try:
        asyncio.run(auth.resolve(ADMIN_TOKEN + "x"))
    except Unauthorized as exc:
        assert "not valid" in exc.detail
    else:
        raise AssertionError("an unknown token was accepted")


def test_missing_or_malformed_header_is_401(anon: httpx.Client) -> None:
    """No Authorization header, another scheme, or a bad token are 401 with WWW-Authenticate."""
    for headers in ({}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer nope"}):
        r = anon.get("/v1/principals", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_principal_token_authenticates(client: httpx.Client) -> None:
    """A stored principal's token authenticates as that principal (so roles apply: 403)."""
    created = create_principal(client, name="reader", roles=["subscriber"])
    with as_token(client, created["token"]) as reader:
        assert reader.get("/v1/incidents").status_code == 200
        assert reader.get("/v1/principals").status_code == 403


def test_a_stale_token_index_never_authenticates(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """An index entry whose principal holds a different token hash is refused."""
    created = create_principal(client, name="victim", roles=["subscriber"])
    forged = "imt_forged-token-value"
    redis_client.set(f"incidents:token:{token_hash(forged)}", created["id"])
    with as_token(client, forged) as attacker:
        assert attacker.get("/v1/incidents").status_code == 401


# Public, or verified by other means: /v2/enqueue (its routing key) and the connectors'
# inbound webhooks (the vendor's signature or bearer secret).
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v2/enqueue",
    "/v1/connectors/{subscription_id}/inbound",
}


def test_every_endpoint_but_the_public_ones_needs_a_token(
    anon: httpx.Client, settings: Settings
) -> None:
    """Every route asks for a caller (401 problem with WWW-Authenticate without a valid
    token) except health, metrics, the OpenAPI document, /v2/enqueue (its routing key) and the
    connectors' inbound webhooks (the vendor's signature); console pages send the browser to
    sign in instead."""
    routes = [r for r in create_app(settings).routes if isinstance(r, Route)]
    assert {r.path for r in routes} >= PUBLIC
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            for headers in ({}, {"Authorization": "Bearer nope"}):
                r = anon.request(method, path, headers=headers)
                if route.path in PUBLIC:
                    assert r.status_code != 401, (method, path)
                    continue
                if route.path.startswith("/console"):
                    # HTML pages: without a session they send the browser to sign in (or
                    # refuse a form without its token); never a bare 401.
                    assert r.status_code in (200, 303, 403, 404), (method, path, r.status_code)
                    continue
                assert r.status_code == 401, (method, path, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["www-authenticate"].startswith("Bearer")
