"""What the adapters' and the sync's endpoints share: an adapter's input schema, and handing
the events they made to the event submission use case (``usecases.event_submission``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jsonschema.protocols import Validator

from incidents.api.toolkit.app_services import Services
from incidents.model.cloudevent import CloudEvent
from incidents.model.principal import Principal
from incidents.usecases.event_submission import EventSubmission


def adapter_schema(svc: Services, name: str) -> Validator:
    """The compiled input schema ``schemas/adapters/<name>.json`` (compiled once)."""
    return svc.adapter_schemas.get(name)


async def submit(
    svc: Services, principal: Principal, events: Sequence[CloudEvent]
) -> list[dict[str, Any]]:
    """Check, admit, plan and store ``events`` as one batch; one result per event as the
    answers show it, saying what became of its alert (opened, deduplicated, ignored...)."""
    made = await svc.get(EventSubmission).submit_made(principal, events)
    return [m.to_dict() for m in made]
