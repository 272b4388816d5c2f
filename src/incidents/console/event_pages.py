"""The console's event page: one stored event as the signed-in principal may read it (as
``GET /v1/events/{id}`` shows it) and, for subscribers and admins, what became of it for
each subscription they own (as ``GET /v1/events/{id}/routes`` says). Reached from an
incident's timeline."""

from __future__ import annotations

from starlette.responses import Response

from incidents.api.delivery_log_routes import routes_of
from incidents.console.pages import Visit
from incidents.console.rendering import Templates
from incidents.queries.query_set import Queries
from incidents.services import services


class EventPages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def event(self, visit: Visit) -> Response:
        svc, principal = services(visit.request), visit.principal
        event_id = visit.request.path_params["id"]
        source = visit.request.query_params.get("source") or None
        shown = await svc.get(Queries).events.get(
            svc.get(Queries).viewer(principal), event_id, source
        )
        routes = None
        if principal.is_admin or "subscriber" in principal.roles:
            routes = await routes_of(svc, principal, event_id, source)
        context = visit.context(stored=shown, routes=routes)
        return self.templates.page(visit.request, "event.html", context)
