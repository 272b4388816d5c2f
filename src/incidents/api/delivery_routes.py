"""HTTP endpoints of delivery: subscriptions (``subscription_routes``) and what was
delivered to them, the dead letters included (``delivery_log_routes``)."""

from __future__ import annotations

from starlette.routing import Route

from incidents.api import delivery_log_routes, subscription_routes
from incidents.api.toolkit.openapi_document import JSONObject


def routes() -> list[Route]:
    return subscription_routes.routes() + delivery_log_routes.routes()


def openapi_paths() -> JSONObject:
    return {**subscription_routes.openapi_paths(), **delivery_log_routes.openapi_paths()}
