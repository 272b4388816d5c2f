"""HTTP endpoints of subscriptions: ``/v1/subscriptions`` and ``/v1/subscriptions/{id}``
(create, list, read, change, delete) and ``rotate-secret``. Subscribers see and manage only
their own subscriptions; admins all."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.owned_subscription import owned
from incidents.api.subscription_openapi import (
    SUBSCRIPTION,
    filter_schema,
    subscription_input,
)
from incidents.delivery import channels, signing_secrets
from incidents.delivery.address_guard import INSECURE, check_url, sink_problem
from incidents.delivery.attempt_log import iso
from incidents.delivery.secret_fields import seal
from incidents.endpoint_support import ID, json_request, now, operation, request_body, subscriber
from incidents.errors import FieldError, InvalidRequest
from incidents.http import SHOWS_A_SECRET, json_response
from incidents.model.filters import FILTER
from incidents.openapi import BEARER, COMPONENTS, JSONObject, errors, query_param
from incidents.services import Services
from incidents.store.secret_box import secret_box
from incidents.subscriptions.delivery_queries import DeliveryQueries
from incidents.subscriptions.handshake import handshake
from incidents.subscriptions.spec import Spec, SubscriptionStatus, parse_spec
from incidents.subscriptions.subscription import Subscription, new_subscription, rotated

ACTIVE, DISABLED = SubscriptionStatus


async def _check_sink(svc: Services, sink: str) -> None:
    problem = await sink_problem(
        sink, svc.settings.allow_private_sinks, allow_insecure=svc.settings.allow_insecure_sinks
    )
    if problem is not None:
        raise InvalidRequest(f"sink refused: {problem}", errors=[FieldError("/sink", problem)])


def _check_secure(svc: Services, sink: str) -> None:
    """An unchanged sink kept active must still be one that may be called."""
    checked = check_url(sink)
    if not svc.settings.allow_insecure_sinks and not (
        isinstance(checked, tuple) and checked[0] == "https"
    ):
        raise InvalidRequest(f"sink refused: {INSECURE}", errors=[FieldError("/sink", INSECURE)])


async def _handshake(request: Request, svc: Services, sub: Subscription) -> Subscription:
    origin = request.url.hostname or "incidents"
    result = await handshake(
        sub.spec.sink,
        origin,
        svc.settings.allow_private_sinks,
        svc.settings.delivery_timeout,
        allow_insecure=svc.settings.allow_insecure_sinks,
    )
    if result.allowed:
        return replace(sub, status=ACTIVE, reason="", rate=result.rate, origin=origin)
    return replace(sub, status=DISABLED, reason=result.reason, rate=None, origin=None)


def _sealed(svc: Services, spec: Spec, sub_id: str, stored: Spec | None) -> Spec:
    """``spec`` as stored: its secrets sealed, a ``***`` kept as the secret ``stored`` holds."""
    pointers = channels.secret_pointers(spec.format)
    if not pointers:
        return spec
    box = secret_box(svc.settings.secret_key)
    kept = stored.formatsettings if stored is not None else {}
    return replace(spec, formatsettings=seal(spec.formatsettings, pointers, kept, sub_id, box))


async def _save(svc: Services, sub: Subscription, previous: Subscription | None = None) -> None:
    """Store ``sub``, its signing secrets sealed when a key is set (plain ones stored before
    one was are sealed by this write too)."""
    box = secret_box(svc.settings.secret_key)
    stored = replace(sub, secrets=signing_secrets.sealed(sub.secrets, sub.id, box))
    await svc.get(DeliveryQueries).subscriptions.save(stored, previous=previous)


async def create(request: Request) -> Response:
    svc, principal = subscriber(request)
    spec, _ = parse_spec(await json_request(request))
    await _check_sink(svc, spec.sink)
    sub = new_subscription(spec, principal.id, now(svc))
    sub = replace(sub, spec=_sealed(svc, spec, sub.id, None))
    if spec.handshake:
        sub = await _handshake(request, svc, sub)
    await _save(svc, sub)
    body = sub.to_dict()
    body["secret"] = sub.secrets[0].value
    return json_response(
        body, status=201, headers={"Location": f"/v1/subscriptions/{sub.id}", **SHOWS_A_SECRET}
    )


async def list_all(request: Request) -> Response:
    svc, principal = subscriber(request)
    owner = None if principal.is_admin else principal.id
    if principal.is_admin and "owner" in request.query_params:
        owner = request.query_params["owner"]
    subs = await svc.get(DeliveryQueries).subscriptions.list(owner)
    return json_response({"subscriptions": [s.to_dict() for s in subs]})


async def get_one(request: Request) -> Response:
    _, _, sub = await owned(request)
    return json_response(sub.to_dict())


async def patch(request: Request) -> Response:
    svc, _, sub = await owned(request)
    # Validated with the stored secrets as ***, which then stand for those stored.
    spec, status = parse_spec(await json_request(request), base=sub.spec.with_masked_secrets())
    spec = _sealed(svc, spec, sub.id, sub.spec)
    if spec.sink != sub.spec.sink:
        await _check_sink(svc, spec.sink)
    elif status == "active" or (status is None and sub.active):
        _check_secure(svc, spec.sink)
    updated = replace(sub, spec=spec, updated_at=now(svc).isoformat())
    if not spec.handshake:
        # a rate and an origin are only ever granted by a handshake
        updated = replace(updated, rate=None, origin=None)
    if status == "disabled":
        updated = replace(updated, status=DISABLED, reason="disabled by its owner")
    else:
        if status == "active" and sub.status != "active":
            updated = replace(updated, status=ACTIVE, reason="")
        # A new sink (or a newly asked handshake) must agree before anything is sent to it,
        # whether or not the patch also says "active".
        unconfirmed = sub.status != "active" or spec.sink != sub.spec.sink or not sub.spec.handshake
        if updated.status == "active" and spec.handshake and unconfirmed:
            updated = await _handshake(request, svc, updated)
    await _save(svc, updated, previous=sub)
    return json_response(updated.to_dict())


async def delete(request: Request) -> Response:
    svc, _, sub = await owned(request)
    await svc.get(DeliveryQueries).subscriptions.delete(sub)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    svc, _, sub = await owned(request)
    when = now(svc)
    at = when.timestamp()
    updated = rotated(sub, at, svc.settings.secret_grace, when.isoformat())
    await _save(svc, updated, previous=sub)
    return json_response(
        {
            "id": sub.id,
            "secret": updated.secrets[0].value,
            "previous_secrets_valid_until": iso(at + svc.settings.secret_grace),
        },
        headers=SHOWS_A_SECRET,
    )


def routes() -> list[Route]:
    return [
        Route("/v1/subscriptions", create, methods=["POST"]),
        Route("/v1/subscriptions", list_all, methods=["GET"]),
        Route("/v1/subscriptions/{id}", get_one, methods=["GET"]),
        Route("/v1/subscriptions/{id}", patch, methods=["PATCH"]),
        Route("/v1/subscriptions/{id}", delete, methods=["DELETE"]),
        Route("/v1/subscriptions/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    ]


def openapi_paths() -> JSONObject:
    op, body = operation, request_body
    owner = [query_param("owner", {"type": "string"}, "admins: only this owner's")]
    return {
        COMPONENTS: {FILTER: filter_schema()},
        "/v1/subscriptions": {
            "post": op("Register a webhook", "201", "Created; carries the secret once",
                       400, 401, 403, 503, schema=SUBSCRIPTION, **body(subscription_input(True))),
            "get": op("List subscriptions (your own; admins see all)", "200", "Subscriptions",
                      401, 403, 503, parameters=owner),
        },
        "/v1/subscriptions/{id}": {
            "get": op("Read a subscription", "200", "The subscription", 401, 403, 404, 503,
                      schema=SUBSCRIPTION, parameters=ID),
            "patch": op("Change a subscription (or set status active/disabled)", "200",
                        "The subscription", 400, 401, 403, 404, 503, schema=SUBSCRIPTION,
                        parameters=ID, **body(subscription_input(False), required=False)),
            "delete": {"summary": "Delete a subscription", "security": BEARER, "parameters": ID,
                       "responses": {"204": {"description": "Deleted"},
                                     **errors(401, 403, 404, 503)}},
        },
        "/v1/subscriptions/{id}/rotate-secret": {
            "post": op("New secret; the old one keeps signing for INCIDENTS_SECRET_GRACE", "200",
                       "The new secret", 401, 403, 404, 503, parameters=ID),
        },
    }  # fmt: skip
