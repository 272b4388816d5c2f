"""The console's event page: one stored event as the signed-in principal may read it (as
``GET /v1/events/{id}`` shows it) and, for subscribers and admins, what became of it for
each subscription they own (as ``GET /v1/events/{id}/routes`` says). Reached from an
incident's timeline."""

from __future__ import annotations

from starlette.responses import Response

from incidents.api.toolkit.app_services import services
from incidents.console.rendering import Templates
from incidents.console.signed_in import SignedIn
from incidents.model.principal import SUBSCRIBER
from incidents.queries.query_set import Queries
from incidents.usecases.delivery_actions import DeliveryActions


class EventPages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def event(self, signed: SignedIn) -> Response:
        svc, principal = services(signed.request), signed.principal
        event_id = signed.request.path_params["id"]
        source = signed.request.query_params.get("source") or None
        shown = await svc.get(Queries).events.get(
            svc.get(Queries).viewer(principal), event_id, source
        )
        routes = None
        if principal.has(SUBSCRIBER):
            routes = await svc.get(DeliveryActions).event_routes(principal, event_id, source)
        context = signed.context(stored=shown, routes=routes)
        return self.templates.page(signed.request, "event.html", context)
