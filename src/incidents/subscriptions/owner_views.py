"""What a subscription's owner may see, as delivery needs it: the owner's principal as it
is now (revoked owners get nothing), the verdict on an event (``policy.outbound.judge``: the
same rule as the read API), and the incident as the owner reads it through the read layer,
for channels that declare ``needs_incident``."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from incidents.errors import NotFound
from incidents.model.cloudevent import StoredEvent
from incidents.model.principal import Principal, admin_principal
from incidents.model.schemas import SchemaRegistry
from incidents.policy.outbound import Verdict, judge
from incidents.policy.principals import PrincipalStore
from incidents.queries.incidents import IncidentQueries
from incidents.queries.visibility import Viewer
from incidents.subscriptions.subscription import Subscription

RULE_OWNER_REVOKED = "owner-revoked"
# The incident views one lane has read: (owner id, incident id) -> view (None: not visible).
IncidentViews = dict[tuple[str, str], Mapping[str, object] | None]


class OwnerViews:
    def __init__(self, redis: aioredis.Redis, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.principals = PrincipalStore(redis)
        self.incidents = IncidentQueries(redis)
        # Owners as read this claim round (``forget`` clears them: a revocation shows at once).
        self.owners: dict[str, Principal | None] = {}

    def forget(self) -> None:
        self.owners.clear()

    async def judge(self, stored: StoredEvent, sub: Subscription) -> Verdict:
        """The verdict on delivering ``stored`` to ``sub``'s owner."""
        if sub.owner not in self.owners:
            self.owners[sub.owner] = await self._owner(sub.owner)
        owner = self.owners[sub.owner]
        if owner is None:
            detail = f"the owner {sub.owner!r} has been revoked"
            return Verdict(False, None, rule=RULE_OWNER_REVOKED, detail=detail)
        return judge(stored.event, owner, self.registry)

    async def incident_view(
        self, owner_id: str, incident: str, views: IncidentViews
    ) -> Mapping[str, object] | None:
        """The incident as the owner may read it through the API (the read layer's view), read
        once per lane; None when the owner may not see it (or it is not stored)."""
        if (owner_id, incident) not in views:
            owner = self.owners.get(owner_id)
            view: Mapping[str, object] | None = None
            if owner is not None:
                try:
                    view = await self.incidents.get(Viewer(owner, self.registry), incident)
                except NotFound:
                    view = None
            views[owner_id, incident] = view
        return views[owner_id, incident]

    async def _owner(self, principal_id: str) -> Principal | None:
        """The subscription owner's principal as it is now; None once it has been revoked
        (principals can be revoked while their subscriptions remain)."""
        if principal_id == admin_principal().id:
            return admin_principal()
        try:
            found = await self.principals.get(principal_id)
        except ValueError:  # a hash that no longer describes a valid principal
            return None
        return None if found is None else found[0]
