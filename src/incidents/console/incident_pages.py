"""The console's incident pages: the list (filtered by status, severity and service), one
incident with its timeline and the actions the signed-in principal may take, and the alerts.
Everything is read through the read layer with the principal's ``Viewer``; every action is
an event posted through ``POST /v1/events`` as that principal, with ``imactor`` its name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from incidents.api.ingest_routes import post_events
from incidents.console.api_calls import call
from incidents.console.pages import Visit
from incidents.console.rendering import SECURITY_HEADERS, Templates
from incidents.errors import FieldError, IncidentsError, InvalidRequest
from incidents.ingest.modes import STRUCTURED
from incidents.model.alert import ALERT_STATUSES
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.model.types import EventType, Extension
from incidents.queries.alerts import AlertFilter
from incidents.queries.incidents import IncidentFilter
from incidents.queries.query_set import Queries
from incidents.services import services
from incidents.store.index_pages import PageRequest

PAGE_SIZE = 50
TIMELINE_LIMIT = 500
CONSOLE_SOURCE = "/console"
FILTERS = ("status", "severity", "service")  # the query parameters a list page keeps


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    type: str
    text_field: str  # where the form's text goes in the event's data ("" for nowhere)


ACTIONS = (
    Action("ack", "Acknowledge", EventType.INCIDENT_ACK, "note"),
    Action("mitigate", "Mitigate", EventType.INCIDENT_MITIGATE, "summary"),
    Action("resolve", "Resolve", EventType.INCIDENT_RESOLVE, "summary"),
    Action("close", "Close", EventType.INCIDENT_CLOSE, "summary"),
    Action("note", "Add note", EventType.INCIDENT_NOTE, "text"),
)
BY_NAME = {a.name: a for a in ACTIONS}


def _choice(visit: Visit, name: str) -> str | None:
    return visit.request.query_params.get(name) or None


def incident_filter(visit: Visit) -> IncidentFilter:
    status, severity = _choice(visit, "status"), _choice(visit, "severity")
    try:
        return IncidentFilter(
            IncidentStatus.parse(status) if status else None,
            Severity.parse(severity) if severity else None,
            _choice(visit, "service"),
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc), errors=[FieldError("/query", str(exc))]) from None


def older_page(visit: Visit, cursor: str | None) -> str | None:
    """The link to the next page: this page's filters kept, with the next cursor."""
    if not cursor:
        return None
    kept = [(k, v) for k, v in visit.request.query_params.multi_items() if k in FILTERS]
    return "?" + urlencode([*kept, ("cursor", cursor)])


def allowed_actions(visit: Visit) -> list[Action]:
    """The actions shown to the principal: those it may publish as a producer."""
    p = visit.principal
    if not (p.is_admin or "producer" in p.roles):
        return []
    return [a for a in ACTIONS if p.may_publish(a.type)]


class IncidentPages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def incidents(self, visit: Visit) -> Response:
        queries = services(visit.request).get(Queries)
        viewer = queries.viewer(visit.principal)
        asked = PageRequest.after(PAGE_SIZE, _choice(visit, "cursor"))
        found = await queries.incidents.page(viewer, incident_filter(visit), asked)
        context = visit.context(
            incidents=found.items,
            older=older_page(visit, found.next_cursor),
            query=visit.request.query_params,
            statuses=[s.value for s in IncidentStatus],
            severities=[s.value for s in Severity],
        )
        name = "incidents_table.html" if _choice(visit, "fragment") else "incidents.html"
        return self.templates.page(visit.request, name, context)

    async def incident(self, visit: Visit, problem: IncidentsError | None = None) -> Response:
        queries = services(visit.request).get(Queries)
        viewer = queries.viewer(visit.principal)
        incident_id = visit.request.path_params["id"]
        document = await queries.incidents.get(viewer, incident_id)
        timeline = await queries.timelines.entries(viewer, incident_id, 0, TIMELINE_LIMIT)
        context = visit.context(
            incident=document,
            timeline=[e.to_dict() for e in timeline],
            actions=allowed_actions(visit),
            problem=problem,
        )
        if _choice(visit, "fragment"):
            return self.templates.page(visit.request, "incident_body.html", context)
        status = problem.status if problem is not None else 200
        return self.templates.page(visit.request, "incident.html", context, status=status)

    async def act(self, visit: Visit) -> Response:
        """Post the chosen action as an event; a refusal shows the page with its detail."""
        incident_id = visit.request.path_params["id"]
        action = BY_NAME.get(visit.form.get("action", ""))
        text = visit.form.get("text", "").strip()
        try:
            if action is None:
                raise InvalidRequest(f"unknown action {visit.form.get('action', '')!r}")
            if action.name == "note" and not text:
                raise InvalidRequest("a note needs some text")
            data = {action.text_field: text} if text else {}
            event = {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": CONSOLE_SOURCE,
                "type": action.type,
                "datacontenttype": "application/json",
                Extension.INCIDENT_ID: incident_id,
                Extension.ACTOR: visit.principal.name,
                "data": data,
            }
            await call(visit.request, post_events, {}, event, STRUCTURED)
        except IncidentsError as exc:
            if exc.status in (401, 404):
                raise
            return await self.incident(visit, problem=exc)
        url = visit.request.url_for("console_incident", id=incident_id).path
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    async def alerts(self, visit: Visit) -> Response:
        queries = services(visit.request).get(Queries)
        viewer = queries.viewer(visit.principal)
        status = _choice(visit, "status")
        where = AlertFilter()
        for known in ALERT_STATUSES:
            if status == known:
                where = AlertFilter(known)
        if status and where.status is None:
            raise InvalidRequest(f"status={status!r} is not one of {', '.join(ALERT_STATUSES)}")
        asked = PageRequest.after(PAGE_SIZE, _choice(visit, "cursor"))
        found = await queries.alerts.page(viewer, where, asked)
        context = visit.context(
            alerts=found.items,
            older=older_page(visit, found.next_cursor),
            status=status or "",
            statuses=ALERT_STATUSES,
        )
        return self.templates.page(visit.request, "alerts.html", context)
