"""The commands a person gives an incident by hand (acknowledge, mitigate, resolve, close,
add a note), as the console offers them: each is an event of its type on the incident,
posted as that person (``imactor`` its name) through the event submission, so policy and
the lifecycle judge it as they judge any producer's event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from incidents.errors import InvalidRequest
from incidents.model.principal import PRODUCER, Principal
from incidents.model.types import EventType, Extension
from incidents.usecases.event_submission import EventSubmission, Submitted


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    type: str
    text_field: str  # where the command's text goes in the event's data ("" for nowhere)


ACTIONS = (
    Action("ack", "Acknowledge", EventType.INCIDENT_ACK, "note"),
    Action("mitigate", "Mitigate", EventType.INCIDENT_MITIGATE, "summary"),
    Action("resolve", "Resolve", EventType.INCIDENT_RESOLVE, "summary"),
    Action("close", "Close", EventType.INCIDENT_CLOSE, "summary"),
    Action("note", "Add note", EventType.INCIDENT_NOTE, "text"),
)
ACTION_BY_NAME = {a.name: a for a in ACTIONS}


@dataclass(frozen=True)
class IncidentCommand:
    """One command: its action and its text (a note, a summary; may be empty but for a
    note)."""

    action: Action
    text: str

    @classmethod
    def parse(cls, name: str, text: str) -> IncidentCommand:
        """The command a form names, or InvalidRequest quoting the unknown name."""
        action = ACTION_BY_NAME.get(name)
        if action is None:
            raise InvalidRequest(f"unknown action {name!r}")
        text = text.strip()
        if action.name == "note" and not text:
            raise InvalidRequest("a note needs some text")
        return cls(action, text)


def allowed_actions(principal: Principal) -> list[Action]:
    """The actions ``principal`` may take: those whose events it may publish as a producer."""
    if not principal.has(PRODUCER):
        return []
    return [a for a in ACTIONS if principal.may_publish(a.type)]


def command_event(
    command: IncidentCommand, incident_id: str, actor: str, source: str, event_id: str
) -> dict[str, object]:
    """The structured CloudEvent that gives ``command`` to the incident, by ``actor``."""
    text = command.text
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": command.action.type,
        "datacontenttype": "application/json",
        Extension.INCIDENT_ID: incident_id,
        Extension.ACTOR: actor,
        "data": {command.action.text_field: text} if text else {},
    }


def new_event_id() -> str:
    return str(uuid.uuid4())


class IncidentCommands:
    """Gives incidents their commands, through the app's event submission."""

    def __init__(self, events: EventSubmission, new_id: Callable[[], str] = new_event_id) -> None:
        self.events = events
        self.new_id = new_id

    async def give(
        self, principal: Principal, incident_id: str, command: IncidentCommand, source: str
    ) -> Submitted:
        """Post ``command`` on ``incident_id`` as ``principal``, from ``source`` (the door)."""
        event = command_event(command, incident_id, principal.name, source, self.new_id())
        return await self.events.submit(principal, [event], batch=False)
