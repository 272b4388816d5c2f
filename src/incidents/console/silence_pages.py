"""The console's silences page: the silences not yet ended (pending and active), a form to
create one and a button to expire each. Reads and changes are the silence use cases
(``usecases.silence_actions``) the API calls too, so who may silence what is judged in one
place."""

from __future__ import annotations

import json
from datetime import datetime

from starlette.responses import Response

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.subscriber_endpoints import now, subscriber
from incidents.console.rendering import Templates
from incidents.console.signed_in import SignedIn
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import FieldError, IncidentsError, InvalidRequest
from incidents.model.bounded_json import check_depth
from incidents.silences.recurrence import weekly_input
from incidents.silences.silence import SilenceState
from incidents.usecases.silence_actions import SilenceActions, silence_document


def _body(form: dict[str, str], at: datetime, max_depth: int) -> dict[str, object]:
    """The silence document of the create form: the filter as JSON, the end as a time or a
    length, the subscriptions comma-separated, an optional weekly window. It nests no deeper
    than a request body may (``max_depth``)."""
    try:
        expression = json.loads(form.get("filter", ""))
    except ValueError:
        raise InvalidRequest(
            "the filter is not JSON", errors=[FieldError("/filter", "a JSON filter expression")]
        ) from None
    recurrence = None
    days, window = form.get("days", "").strip(), form.get("window", "").strip()
    if days or window:
        try:
            recurrence = weekly_input(days, window, form.get("timezone", "UTC"))
        except ValueError as exc:
            raise InvalidRequest(
                str(exc), errors=[FieldError("/recurrence/weekly", str(exc))]
            ) from None
    body = silence_document(
        expression,
        form.get("comment", ""),
        form.get("ends_at", ""),
        at,
        starts=form.get("starts_at", "").strip() or None,
        subscriptions=[s.strip() for s in form.get("subscriptions", "").split(",") if s.strip()],
        recurrence=recurrence,
    )
    check_depth(body, max_depth)
    return body


class SilencePages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def silences(
        self, signed: SignedIn, problem: IncidentsError | None = None, notice: str = ""
    ) -> Response:
        svc, principal = subscriber(signed.request)
        at = now(svc)
        found = await svc.get(SilenceActions).visible(principal)
        running = [s.to_dict(at) for s in found if s.state(at) is not SilenceState.EXPIRED]
        subs = await svc.get(DeliveryQueries).subscriptions.list(
            None if principal.is_admin else principal.id
        )
        context = signed.context(
            silences=running,
            subscriptions=[s.id for s in subs],
            problem=problem,
            notice=notice,
            form=signed.form if problem is not None else {},
        )
        status = problem.status if problem is not None else 200
        return self.templates.page(signed.request, "silences.html", context, status=status)

    async def change(self, signed: SignedIn) -> Response:
        """Create (``change=create``) or expire (``change=expire``, ``id``) a silence."""
        what = signed.form.get("change", "")
        svc = services(signed.request)
        try:
            if what == "create":
                subscriber(signed.request)
                body = _body(dict(signed.form), now(svc), svc.settings.max_json_depth)
                created = await svc.get(SilenceActions).create(signed.principal, body)
                notice = f"Silence {created.id} created."
            elif what == "expire":
                silence_id = signed.form.get("id", "")
                await svc.get(SilenceActions).expire(signed.principal, silence_id)
                notice = f"Silence {silence_id} expired."
            else:
                raise InvalidRequest(f"unknown change {what!r}")
        except IncidentsError as exc:
            if exc.status == 401:
                raise
            return await self.silences(signed, problem=exc)
        return await self.silences(signed, notice=notice)
