"""What the delivery endpoints share beyond ``incidents.endpoint_support``: the subscription a
request names, through the read layer, so the ownership rule has one home."""

from __future__ import annotations

from starlette.requests import Request

from incidents.auth import Principal
from incidents.endpoint_support import subscriber
from incidents.queries.query_set import Queries
from incidents.services import Services
from incidents.subscriptions.delivery_queries import DeliveryQueries
from incidents.subscriptions.subscription import Subscription


async def owned(request: Request) -> tuple[Services, Principal, Subscription]:
    """The subscription the path names, if the caller owns it (admins own all); else 404."""
    svc, principal = subscriber(request)
    viewer = svc.get(Queries).viewer(principal)
    sub = await svc.get(DeliveryQueries).subscription(viewer, request.path_params["id"])
    return svc, principal, sub
