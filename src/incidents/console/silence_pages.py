"""The console's silences page: the silences not yet ended (pending and active), a form to
create one and a button to expire each. Reads and changes go through the API's own handlers
(``api.silence_routes``), so who may silence what is judged in one place."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime

from starlette.responses import Response

from incidents.api import silence_routes
from incidents.console.api_calls import call
from incidents.console.pages import Visit
from incidents.console.rendering import Templates
from incidents.endpoint_support import now, subscriber
from incidents.errors import FieldError, IncidentsError, InvalidRequest
from incidents.silences.recurrence import weekly_input
from incidents.silences.silence import SilenceState, end_after
from incidents.subscriptions.delivery_queries import DeliveryQueries


def _body(form: dict[str, str], at: datetime) -> dict[str, object]:
    """The API body of the create form: the filter as JSON, the end as a time or a length,
    the subscriptions comma-separated, an optional weekly window."""
    try:
        expression = json.loads(form.get("filter", ""))
    except ValueError:
        raise InvalidRequest(
            "the filter is not JSON", errors=[FieldError("/filter", "a JSON filter expression")]
        ) from None
    body: dict[str, object] = {"filter": expression, "comment": form.get("comment", "")}
    starts = at
    if raw := form.get("starts_at", "").strip():
        body["starts_at"] = raw
        with contextlib.suppress(ValueError):  # the API says what is wrong with it
            starts = datetime.fromisoformat(raw)
    body["ends_at"] = end_after(form.get("ends_at", ""), starts)
    subs = [s.strip() for s in form.get("subscriptions", "").split(",") if s.strip()]
    if subs:
        body["subscriptions"] = subs
    days, window = form.get("days", "").strip(), form.get("window", "").strip()
    if days or window:
        try:
            body["recurrence"] = weekly_input(days, window, form.get("timezone", "UTC"))
        except ValueError as exc:
            raise InvalidRequest(
                str(exc), errors=[FieldError("/recurrence/weekly", str(exc))]
            ) from None
    return body


class SilencePages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def silences(
        self, visit: Visit, problem: IncidentsError | None = None, notice: str = ""
    ) -> Response:
        svc, principal = subscriber(visit.request)
        at = now(svc)
        found = await silence_routes.visible_silences(svc, principal)
        running = [s.to_dict(at) for s in found if s.state(at) is not SilenceState.EXPIRED]
        subs = await svc.get(DeliveryQueries).subscriptions.list(
            None if principal.is_admin else principal.id
        )
        context = visit.context(
            silences=running,
            subscriptions=[s.id for s in subs],
            problem=problem,
            notice=notice,
            form=visit.form if problem is not None else {},
        )
        status = problem.status if problem is not None else 200
        return self.templates.page(visit.request, "silences.html", context, status=status)

    async def change(self, visit: Visit) -> Response:
        """Create (``change=create``) or expire (``change=expire``, ``id``) a silence."""
        what = visit.form.get("change", "")
        try:
            if what == "create":
                body = _body(dict(visit.form), now(subscriber(visit.request)[0]))
                done = await call(visit.request, silence_routes.create, {}, body)
                created = done.get("id") if isinstance(done, dict) else ""
                notice = f"Silence {created} created."
            elif what == "expire":
                params = {"id": visit.form.get("id", "")}
                await call(visit.request, silence_routes.expire, params, {})
                notice = f"Silence {params['id']} expired."
            else:
                raise InvalidRequest(f"unknown change {what!r}")
        except IncidentsError as exc:
            if exc.status == 401:
                raise
            return await self.silences(visit, problem=exc)
        return await self.silences(visit, notice=notice)
