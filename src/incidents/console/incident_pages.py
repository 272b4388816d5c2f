"""The console's incident pages: the list (filtered by status, severity and service), one
incident with its timeline and the actions the signed-in principal may take, and the alerts.
Everything is read through the read layer with the principal's ``Viewer``; every action is
an incident command (``usecases.incident_commands``): an event submitted as that principal,
as ``POST /v1/events`` submits one, with ``imactor`` its name."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from incidents.api.toolkit.app_services import services
from incidents.console.rendering import SECURITY_HEADERS, Templates
from incidents.console.signed_in import SignedIn
from incidents.errors import FieldError, IncidentsError, InvalidRequest
from incidents.model.alert import ALERT_STATUSES
from incidents.model.severity import Severity
from incidents.model.status import IncidentStatus
from incidents.queries.alerts import AlertFilter
from incidents.queries.incidents import IncidentFilter
from incidents.queries.query_set import Queries
from incidents.store.index_pages import PageRequest
from incidents.usecases.incident_commands import IncidentCommand, IncidentCommands, allowed_actions

PAGE_SIZE = 50
TIMELINE_LIMIT = 500
CONSOLE_SOURCE = "/console"
FILTERS = ("status", "severity", "service")  # the query parameters a list page keeps


def _choice(signed: SignedIn, name: str) -> str | None:
    return signed.request.query_params.get(name) or None


def incident_filter(signed: SignedIn) -> IncidentFilter:
    status, severity = _choice(signed, "status"), _choice(signed, "severity")
    try:
        return IncidentFilter(
            IncidentStatus.parse(status) if status else None,
            Severity.parse(severity) if severity else None,
            _choice(signed, "service"),
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc), errors=[FieldError("/query", str(exc))]) from None


def older_page(signed: SignedIn, cursor: str | None) -> str | None:
    """The link to the next page: this page's filters kept, with the next cursor."""
    if not cursor:
        return None
    kept = [(k, v) for k, v in signed.request.query_params.multi_items() if k in FILTERS]
    return "?" + urlencode([*kept, ("cursor", cursor)])


class IncidentPages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def incidents(self, signed: SignedIn) -> Response:
        queries = services(signed.request).get(Queries)
        viewer = queries.viewer(signed.principal)
        asked = PageRequest.after(PAGE_SIZE, _choice(signed, "cursor"))
        found = await queries.incidents.page(viewer, incident_filter(signed), asked)
        context = signed.context(
            incidents=found.items,
            older=older_page(signed, found.next_cursor),
            query=signed.request.query_params,
            statuses=[s.value for s in IncidentStatus],
            severities=[s.value for s in Severity],
        )
        name = "incidents_table.html" if _choice(signed, "fragment") else "incidents.html"
        return self.templates.page(signed.request, name, context)

    async def incident(self, signed: SignedIn, problem: IncidentsError | None = None) -> Response:
        queries = services(signed.request).get(Queries)
        viewer = queries.viewer(signed.principal)
        incident_id = signed.request.path_params["id"]
        document = await queries.incidents.get(viewer, incident_id)
        timeline = await queries.timelines.entries(viewer, incident_id, 0, TIMELINE_LIMIT)
        context = signed.context(
            incident=document,
            timeline=[e.to_dict() for e in timeline],
            actions=allowed_actions(signed.principal),
            problem=problem,
        )
        if _choice(signed, "fragment"):
            return self.templates.page(signed.request, "incident_body.html", context)
        status = problem.status if problem is not None else 200
        return self.templates.page(signed.request, "incident.html", context, status=status)

    async def act(self, signed: SignedIn) -> Response:
        """Post the chosen action as an event; a refusal shows the page with its detail."""
        incident_id = signed.request.path_params["id"]
        form = signed.form
        metrics = signed.request.app.state.metrics  # counted as POST /v1/events counts
        try:
            command = IncidentCommand.parse(form.get("action", ""), form.get("text", ""))
            commands = services(signed.request).get(IncidentCommands)
            with metrics.counting_events() as counted:
                counted(await commands.give(signed.principal, incident_id, command, CONSOLE_SOURCE))
        except IncidentsError as exc:
            if exc.status in (401, 404):
                raise
            return await self.incident(signed, problem=exc)
        url = signed.request.url_for("console_incident", id=incident_id).path
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    async def alerts(self, signed: SignedIn) -> Response:
        queries = services(signed.request).get(Queries)
        viewer = queries.viewer(signed.principal)
        status = _choice(signed, "status")
        where = AlertFilter()
        for known in ALERT_STATUSES:
            if status == known:
                where = AlertFilter(known)
        if status and where.status is None:
            raise InvalidRequest(f"status={status!r} is not one of {', '.join(ALERT_STATUSES)}")
        asked = PageRequest.after(PAGE_SIZE, _choice(signed, "cursor"))
        found = await queries.alerts.page(viewer, where, asked)
        context = signed.context(
            alerts=found.items,
            older=older_page(signed, found.next_cursor),
            status=status or "",
            statuses=ALERT_STATUSES,
        )
        return self.templates.page(signed.request, "alerts.html", context)
