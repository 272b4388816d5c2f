"""The console's delivery pages: subscriptions (status, failure rate, the latest attempts with
the request made and the response), their enable/disable, replay and secret rotation; the
dead letters and their redrive; and the principals (admins). Reads go through the delivery
queries with the principal's ``Viewer``; each change is the use case the API calls too
(``usecases.subscription_actions``, ``usecases.delivery_actions``)."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from incidents.api.toolkit.app_services import services
from incidents.api.toolkit.subscriber_endpoints import subscriber
from incidents.console.rendering import SECURITY_HEADERS, Templates
from incidents.console.signed_in import SignedIn
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.errors import IncidentsError, InvalidRequest
from incidents.model.principal import ADMIN
from incidents.policy.principals import PrincipalStore
from incidents.queries.query_set import Queries
from incidents.usecases.delivery_actions import DeliveryActions, replay_since
from incidents.usecases.subscription_actions import SubscriptionActions

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

    async def subscriptions(self, signed: SignedIn) -> Response:
        svc, principal = subscriber(signed.request)
        viewer = svc.get(Queries).viewer(principal)
        subs = await svc.get(DeliveryQueries).subscriptions.list(
            None if principal.is_admin else principal.id
        )
        rows = []
        for sub in subs:
            log = await svc.get(DeliveryQueries).log(viewer, sub.id, ATTEMPTS_SHOWN)
            rows.append({**sub.to_dict(), "failure_rate": failure_rate(log.attempts)})
        context = signed.context(subscriptions=rows)
        return self.templates.page(signed.request, "subscriptions.html", context)

    async def subscription(
        self,
        signed: SignedIn,
        problem: IncidentsError | None = None,
        notice: str = "",
        secret: str = "",
    ) -> Response:
        svc, principal = subscriber(signed.request)
        viewer = svc.get(Queries).viewer(principal)
        log = await svc.get(DeliveryQueries).log(
            viewer, signed.request.path_params["id"], ATTEMPTS_SHOWN
        )
        context = signed.context(
            subscription=log.subscription.to_dict(),
            attempts=log.attempts,
            failure_rate=failure_rate(log.attempts),
            problem=problem,
            notice=notice,
            secret=secret,
        )
        status = problem.status if problem is not None else 200
        return self.templates.page(signed.request, "subscription.html", context, status=status)

    async def change(self, signed: SignedIn) -> Response:
        """Enable, disable, replay or rotate, through the use cases the API calls; a refusal
        shows its detail."""
        sub_id = signed.request.path_params["id"]
        what = signed.form.get("change", "")
        subscriptions = services(signed.request).get(SubscriptionActions)
        deliveries = services(signed.request).get(DeliveryActions)
        origin = signed.request.url.hostname
        try:
            if what in ("enable", "disable"):
                status = "active" if what == "enable" else "disabled"
                sub = await subscriptions.owned(signed.principal, sub_id)
                await subscriptions.update(signed.principal, sub, {"status": status}, origin)
                notice = f"Subscription {'enabled' if what == 'enable' else 'disabled'}."
            elif what == "replay":
                since = signed.form.get("since", "").strip()
                sub = await subscriptions.owned(signed.principal, sub_id)
                done = await deliveries.replay(signed.principal, sub, replay_since(since))
                notice = f"Replay queued {done.queued} event(s) since {since}."
            elif what == "rotate":
                rotated = await subscriptions.rotate_secret(signed.principal, sub_id)
                notice = (
                    f"Secret rotated; the previous one stays valid until {rotated.previous_until}."
                )
                return await self.subscription(signed, notice=notice, secret=rotated.secret)
            else:
                raise InvalidRequest(f"unknown change {what!r}")
        except IncidentsError as exc:
            if exc.status in (401, 404):
                raise
            return await self.subscription(signed, problem=exc)
        return await self.subscription(signed, notice=notice)

    async def dead_letters(
        self, signed: SignedIn, problem: IncidentsError | None = None
    ) -> Response:
        signed.principal.require(ADMIN)
        found = await services(signed.request).get(DeliveryQueries).dead_letters(DEAD_LETTERS_SHOWN)
        context = signed.context(dead_letters=found, problem=problem)
        status = problem.status if problem is not None else 200
        return self.templates.page(signed.request, "dead_letters.html", context, status=status)

    async def redrive(self, signed: SignedIn) -> Response:
        delivery_id = signed.request.path_params["id"]
        try:
            await (
                services(signed.request).get(DeliveryActions).redrive(signed.principal, delivery_id)
            )
        except IncidentsError as exc:
            if exc.status == 401:
                raise
            return await self.dead_letters(signed, problem=exc)
        url = signed.request.url_for("console_dead_letters").path
        return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

    async def principals(self, signed: SignedIn) -> Response:
        signed.principal.require(ADMIN)
        found = await services(signed.request).get(PrincipalStore).list()
        rows = [{"principal": p, "created_at": created} for p, created in found]
        context = signed.context(principals=rows)
        return self.templates.page(signed.request, "principals.html", context)
