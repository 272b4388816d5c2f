"""The incident commands, as the console offers them: which a person may give, what each
form is turned into, and that each is an event submitted as that person."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from incidents.errors import Forbidden, InvalidRequest
from incidents.ingest.pipeline import Ingestor
from incidents.model.principal import Principal
from incidents.model.types import EventType, Extension
from incidents.store.events import EventStore
from incidents.usecases.event_submission import EventSubmission
from incidents.usecases.incident_commands import (
    ACTIONS,
    IncidentCommand,
    IncidentCommands,
    allowed_actions,
    command_event,
)
from tests.support import with_async_redis
from tests.usecase_support import ADMIN, REGISTRY, SUBSCRIBER, now, silent_redis


def commands(redis: aioredis.Redis) -> IncidentCommands:
    store = EventStore(redis)
    return IncidentCommands(EventSubmission(Ingestor(REGISTRY, store, now)), lambda: "e1")


def test_an_unknown_action_or_an_empty_note_is_refused() -> None:
    """An action that is not offered is refused quoting it; a note of blanks has no text."""
    with pytest.raises(InvalidRequest, match="unknown action 'delete'"):
        IncidentCommand.parse("delete", "")
    with pytest.raises(InvalidRequest, match="a note needs some text"):
        IncidentCommand.parse("note", "   ")


def test_a_command_keeps_its_text_without_the_blanks_around_it() -> None:
    """The text is kept trimmed; a command other than a note may have none."""
    assert IncidentCommand.parse("ack", "  on it \n").text == "on it"
    assert IncidentCommand.parse("resolve", "").text == ""


def test_a_person_is_offered_the_commands_whose_events_it_may_publish() -> None:
    """An admin gets every command; a producer those its publish patterns allow; a
    subscriber none."""
    acker = Principal("p2", "acker", frozenset({"producer"}), publish=("im.incident.ack",))
    assert allowed_actions(ADMIN) == list(ACTIONS)
    assert [a.name for a in allowed_actions(acker)] == ["ack"]
    assert allowed_actions(SUBSCRIBER) == []


@pytest.mark.parametrize(
    ("name", "text", "data"),
    [("ack", "on it", {"note": "on it"}), ("resolve", "", {}), ("note", "x", {"text": "x"})],
)
def test_a_command_is_an_event_on_the_incident_by_its_actor(
    name: str, text: str, data: dict[str, str]
) -> None:
    """The event has the action's type, names the incident and the actor, and carries the
    text in the action's field (no field without text)."""
    command = IncidentCommand.parse(name, text)
    event = command_event(command, "INC-7", "alice", "/console", "e1")
    assert event["type"] == command.action.type
    assert event[Extension.INCIDENT_ID] == "INC-7"
    assert event[Extension.ACTOR] == "alice"
    assert (event["id"], event["source"], event["data"]) == ("e1", "/console", data)


def test_a_command_is_given_only_by_a_producer() -> None:
    """A subscriber's command is Forbidden before anything is read."""
    note = IncidentCommand.parse("note", "hello")
    with pytest.raises(Forbidden):
        asyncio.run(commands(silent_redis()).give(SUBSCRIBER, "INC-1", note, "/console"))


def test_a_command_on_a_declared_incident_is_stored(redis_url: str) -> None:
    """An admin's note on an incident is accepted, on that incident."""
    declare = {
        "specversion": "1.0", "id": "d1", "source": "/tests",
        "type": EventType.INCIDENT_DECLARE,
        "data": {"title": "Checkout down", "severity": "SEV2", "service": "checkout"},
    }  # fmt: skip

    async def work(redis: aioredis.Redis) -> tuple[str | None, str | None]:
        given = commands(redis)
        declared = await given.events.submit(ADMIN, [declare], batch=False)
        incident = declared.accepted[0].incident_id
        assert incident is not None
        note = IncidentCommand.parse("note", "looking")
        done = await given.give(ADMIN, incident, note, "/console")
        return incident, done.accepted[0].incident_id

    declared, noted = with_async_redis(redis_url, work)
    assert noted == declared
