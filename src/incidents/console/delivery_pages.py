"""The console's delivery pages: subscriptions (status, failure rate, the latest attempts with
the request made and the response), their enable/disable, replay and secret rotation; the
dead letters and their redrive; and the principals (admins). Reads go through the delivery
queries with the principal's ``Viewer``; each change calls the API endpoint that makes it."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from incidents.api import delivery_log_routes, subscription_routes
from incidents.console.api_calls import call
from incidents.console.pages import Visit
from incidents.console.rendering import SECURITY_HEADERS, Templates
from incidents.endpoint_support import subscriber
from incidents.errors import IncidentsError, InvalidRequest
from incidents.policy.principals import PrincipalStore
from incidents.queries.query_set import Queries
from incidents.services import services
from incidents.subscriptions.delivery_queries import DeliveryQueries

ATTEMPTS_SHOWN = 50
DEAD_LETTERS_SHOWN = 200


def failure_rate(attempts: list[dict[str, object]]) -> float | None:
    """The share of recent attempts that were not delivered (withheld, silenced, skipped and
    filter errors aside: nothing was tried)."""
    untried = ("withheld", "silenced", "skipped", "filter_error")
    tried = [a for a in attempts if a.get("outcome") not in untried]
    if not tried:
        return None
    failed = sum(1 for a in tried if a.get("outcome") != "delivered")
    return failed / len(tried)


class DeliveryPages:
    def __init__(self, templates: Templates) -> None:
        self.templates = templates

    async def subscriptions(self, visit: Visit) -> Response:
        svc, principal = subscriber(visit.request)
        viewer = svc.get(Queries).viewer(principal)
        subs = await svc.get(DeliveryQueries).subscriptions.list(
            None if principal.is_admin else principal.id
        )
        rows = []
        for sub in subs:
            log = await svc.get(DeliveryQueries).log(viewer, sub.id, ATTEMPTS_SHOWN)
            rows.append({**sub.to_dict(), "failure_rate": failure_rate(log.attempts)})
        context = visit.context(subscriptions=rows)
        return self.templates.page(visit.request, "subscriptions.html", context)

    async def subscription(
        self,
        visit: Visit,
        problem: IncidentsError | None = None,
        notice: str = "",
        secret: str = "",
    ) -> Response:
        svc, principal = subscriber(visit.request)
        viewer = svc.get(Queries).viewer(principal)
        log = await svc.get(DeliveryQueries).log(
            viewer, visit.request.path_params["id"], ATTEMPTS_SHOWN
        )
        context = visit.context(
            subscription=log.subscription.to_dict(),
            attempts=log.attempts,
            failure_rate=failure_rate(log.attempts),
            problem=problem,
            notice=notice,
            secret=secret,
        )
        status = problem.status if problem is not None else 200
        return self.templates.page(visit.request, "subscription.html", context, status=status)

    async def change(self, visit: Visit) -> Response:
        """Enable, disable, replay or rotate, as the API does it; a refusal shows its detail."""
        sub_id = visit.request.path_params["id"]
        what = visit.form.get("change", "")
        params = {"id": sub_id}
        try:
            if what in ("enable", "disable"):
                status = "active" if what == "enable" else "disabled"
                await call(visit.request, subscription_routes.patch, params, {"status": status})
                notice = f"Subscription {'enabled' if what == 'enable' else 'disabled'}."
            elif what == "replay":
                since = visit.form.get("since", "").strip()
                done = await call(
                    visit.request, delivery_log_routes.replay_since, params, {"since": since}
                )
                queued = done.get("queued") if isinstance(done, dict) else None
                notice = f"Replay queued {queued} event(s) since {since}."
            elif what == "rotate":
                done = await call(visit.request, subscription_routes.rotate_secret, params, {})
                secret = str(done.get("secret", "")) if isinstance(done, dict) else ""
                until = done.get("previous_secrets_valid_until") if isinstance(done, dict) else ""
                notice = f"Secret rotated; the previous one stays valid until {until}."
                return await self.subscription(visit, notice=notice, secret=secret)
            else:
                raise InvalidRequest(f"unknown change {what!r}")
        except IncidentsError as exc:
            if exc.status in (401, 404):
                raise
            return await self.subscription(visit, problem=exc)
        return await self.subscription(visit, notice=notice)

    async def dead_letters(self, visit: Visit, problem: IncidentsError | None = None) -> Response:
        visit.principal.require("admin")
        found = await services(visit.request).get(DeliveryQueries).dead_letters(DEAD_LETTERS_SHOWN)
        context = visit.context(dead_letters=found, problem=problem)
        status = problem.status if problem is not None else 200
        return self.templates.page(visit.request, "dead_letters.html", context, status=status)

    async def redrive(self, visit: Visit) -> Response:
        params = {"id": visit.request.path_params["id"]}
        try:
            await call(visit.request, delivery_log_routes.redrive, params, {})
        except IncidentsError as exc:
            if exc.status == 401:
                raise
            return await self.dead_letters(visit, problem=exc)
        url = visit.request.url_for("console_dead_letters").path
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    async def principals(self, visit: Visit) -> Response:
        visit.principal.require("admin")
        found = await services(visit.request).get(PrincipalStore).list()
        rows = [{"principal": p, "created_at": created} for p, created in found]
        context = visit.context(principals=rows)
        return self.templates.page(visit.request, "principals.html", context)
