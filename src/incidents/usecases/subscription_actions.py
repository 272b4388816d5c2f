"""Subscriptions: register a webhook, list and read the caller's, change one (its status
too), delete one, rotate its signing secret. Subscribers manage only their own
subscriptions; admins all. Another's subscription is NotFound, as a missing one is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from incidents.delivery.address_guard import INSECURE, sink_problem
from incidents.delivery.attempt_log import iso
from incidents.delivery.delivery_queries import DeliveryQueries
from incidents.delivery.handshake import handshake
from incidents.errors import FieldError, InvalidRequest
from incidents.model.principal import SUBSCRIBER, Principal
from incidents.model.sink_url import check_url
from incidents.queries.query_set import Queries
from incidents.settings import Settings
from incidents.store.secret_box import secret_box
from incidents.subscriptions import formats, signing_secrets
from incidents.subscriptions.secret_fields import seal
from incidents.subscriptions.spec import Spec, SubscriptionStatus, parse_spec
from incidents.subscriptions.subscription import Subscription, new_subscription, rotated

ACTIVE, DISABLED = SubscriptionStatus
DEFAULT_ORIGIN = "incidents"  # the handshake's origin when the request named no host


@dataclass(frozen=True)
class Registered:
    """A new subscription and its signing secret, shown this once."""

    subscription: Subscription
    secret: str


@dataclass(frozen=True)
class RotatedSecret:
    """A subscription's new signing secret; the previous ones sign until ``previous_until``."""

    subscription_id: str
    secret: str
    previous_until: str  # RFC 3339


class SubscriptionActions:
    """The subscription operations, built once with the app's settings, stores and clock."""

    def __init__(
        self,
        settings: Settings,
        deliveries: DeliveryQueries,
        queries: Queries,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.deliveries = deliveries
        self.queries = queries
        self.clock = clock

    async def owned(self, principal: Principal, sub_id: str) -> Subscription:
        """The subscription, if ``principal`` owns it (admins own all); else NotFound. The
        changes below that take a ``Subscription`` take one found here."""
        principal.require(SUBSCRIBER)
        return await self.deliveries.subscription(self.queries.viewer(principal), sub_id)

    async def register(
        self, principal: Principal, document: object, origin: str | None
    ) -> Registered:
        """A new subscription from its JSON document, owned by ``principal``; its sink is
        checked, and asked first when the document wants a handshake (``origin``: the host
        the request came to)."""
        principal.require(SUBSCRIBER)
        spec, _ = parse_spec(document)
        await self._check_sink(spec.sink)
        sub = new_subscription(spec, principal.id, self.clock())
        sub = replace(sub, spec=self._sealed(spec, sub.id, None))
        if spec.handshake:
            sub = await self._handshake(sub, origin)
        await self._save(sub)
        return Registered(sub, sub.secrets[0].value)

    async def visible(self, principal: Principal, owner: str | None = None) -> list[Subscription]:
        """``principal``'s subscriptions; an admin's: every one, or ``owner``'s if named."""
        principal.require(SUBSCRIBER)
        return await self.deliveries.subscriptions.list(
            owner if principal.is_admin else principal.id
        )

    async def update(
        self, principal: Principal, sub: Subscription, document: object, origin: str | None
    ) -> Subscription:
        """``sub`` (found by ``owned``) changed by a JSON document; ``status`` enables or
        disables it. A new sink, or a handshake newly asked, is asked again before anything
        is sent to it."""
        principal.require(SUBSCRIBER)
        # Validated with the stored secrets as ***, which then stand for those stored.
        spec, status = parse_spec(document, base=sub.spec.with_masked_secrets())
        spec = self._sealed(spec, sub.id, sub.spec)
        if spec.sink != sub.spec.sink:
            await self._check_sink(spec.sink)
        elif status == "active" or (status is None and sub.active):
            self._check_secure(spec.sink)
        updated = replace(sub, spec=spec, updated_at=self.clock().isoformat())
        if not spec.handshake:
            # a rate and an origin are only ever granted by a handshake
            updated = replace(updated, rate=None, origin=None)
        if status == "disabled":
            updated = replace(updated, status=DISABLED, reason="disabled by its owner")
        else:
            if status == "active" and sub.status != "active":
                updated = replace(updated, status=ACTIVE, reason="")
            # A new sink (or a newly asked handshake) must agree before anything is sent to
            # it, whether or not the change also says "active".
            unconfirmed = (
                sub.status != "active" or spec.sink != sub.spec.sink or not sub.spec.handshake
            )
            if updated.status == "active" and spec.handshake and unconfirmed:
                updated = await self._handshake(updated, origin)
        await self._save(updated, previous=sub)
        return updated

    async def delete(self, principal: Principal, sub_id: str) -> None:
        sub = await self.owned(principal, sub_id)
        await self.deliveries.subscriptions.delete(sub)

    async def rotate_secret(self, principal: Principal, sub_id: str) -> RotatedSecret:
        """A new signing secret; the previous ones keep signing for INCIDENTS_SECRET_GRACE."""
        sub = await self.owned(principal, sub_id)
        when = self.clock()
        at = when.timestamp()
        grace = self.settings.secret_grace
        updated = rotated(sub, at, grace, when.isoformat())
        await self._save(updated, previous=sub)
        return RotatedSecret(sub.id, updated.secrets[0].value, iso(at + grace))

    async def _check_sink(self, sink: str) -> None:
        problem = await sink_problem(
            sink,
            self.settings.allow_private_sinks,
            allow_insecure=self.settings.allow_insecure_sinks,
        )
        if problem is not None:
            raise InvalidRequest(f"sink refused: {problem}", errors=[FieldError("/sink", problem)])

    def _check_secure(self, sink: str) -> None:
        """An unchanged sink kept active must still be one that may be called."""
        checked = check_url(sink)
        if not self.settings.allow_insecure_sinks and not (
            isinstance(checked, tuple) and checked[0] == "https"
        ):
            raise InvalidRequest(
                f"sink refused: {INSECURE}", errors=[FieldError("/sink", INSECURE)]
            )

    async def _handshake(self, sub: Subscription, origin: str | None) -> Subscription:
        origin = origin or DEFAULT_ORIGIN
        result = await handshake(
            sub.spec.sink,
            origin,
            self.settings.allow_private_sinks,
            self.settings.delivery_timeout,
            allow_insecure=self.settings.allow_insecure_sinks,
        )
        if result.allowed:
            return replace(sub, status=ACTIVE, reason="", rate=result.rate, origin=origin)
        return replace(sub, status=DISABLED, reason=result.reason, rate=None, origin=None)

    def _sealed(self, spec: Spec, sub_id: str, stored: Spec | None) -> Spec:
        """``spec`` as stored: its secrets sealed, a ``***`` kept as the secret ``stored``
        holds."""
        pointers = formats.secret_pointers(spec.format)
        if not pointers:
            return spec
        box = secret_box(self.settings.secret_key)
        kept = stored.formatsettings if stored is not None else {}
        return replace(spec, formatsettings=seal(spec.formatsettings, pointers, kept, sub_id, box))

    async def _save(self, sub: Subscription, previous: Subscription | None = None) -> None:
        """Store ``sub``, its signing secrets sealed when a key is set (plain ones stored
        before one was are sealed by this write too)."""
        box = secret_box(self.settings.secret_key)
        stored = replace(sub, secrets=signing_secrets.sealed(sub.secrets, sub.id, box))
        await self.deliveries.subscriptions.save(stored, previous=previous)
