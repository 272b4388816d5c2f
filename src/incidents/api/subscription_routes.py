"""HTTP endpoints of subscriptions: ``/v1/subscriptions`` and ``/v1/subscriptions/{id}``
(create, list, read, change, delete) and ``rotate-secret``. Subscribers see and manage only
their own subscriptions; admins all."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from incidents.api.subscription_openapi import (
    SUBSCRIPTION,
    filter_schema,
    subscription_input,
)
from incidents.api.toolkit.openapi_document import (
    BEARER,
    COMPONENTS,
    JSONObject,
    errors,
    query_param,
)
from incidents.api.toolkit.responses import SHOWS_A_SECRET, json_response
from incidents.api.toolkit.subscriber_endpoints import (
    ID,
    json_request,
    operation,
    request_body,
    subscriber,
)
from incidents.model.filters import FILTER
from incidents.usecases.subscription_actions import SubscriptionActions


async def create(request: Request) -> Response:
    svc, principal = subscriber(request)
    done = await svc.get(SubscriptionActions).register(
        principal, await json_request(request), request.url.hostname
    )
    sub = done.subscription
    body = sub.to_dict()
    body["secret"] = done.secret
    return json_response(
        body, status=201, headers={"Location": f"/v1/subscriptions/{sub.id}", **SHOWS_A_SECRET}
    )


async def list_all(request: Request) -> Response:
    svc, principal = subscriber(request)
    subs = await svc.get(SubscriptionActions).visible(principal, request.query_params.get("owner"))
    return json_response({"subscriptions": [s.to_dict() for s in subs]})


async def get_one(request: Request) -> Response:
    svc, principal = subscriber(request)
    sub = await svc.get(SubscriptionActions).owned(principal, request.path_params["id"])
    return json_response(sub.to_dict())


async def patch(request: Request) -> Response:
    svc, principal = subscriber(request)
    actions = svc.get(SubscriptionActions)
    sub = await actions.owned(principal, request.path_params["id"])
    document = await json_request(request)
    updated = await actions.update(principal, sub, document, request.url.hostname)
    return json_response(updated.to_dict())


async def delete(request: Request) -> Response:
    svc, principal = subscriber(request)
    await svc.get(SubscriptionActions).delete(principal, request.path_params["id"])
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    svc, principal = subscriber(request)
    done = await svc.get(SubscriptionActions).rotate_secret(principal, request.path_params["id"])
    return json_response(
        {
            "id": done.subscription_id,
            "secret": done.secret,
            "previous_secrets_valid_until": done.previous_until,
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
