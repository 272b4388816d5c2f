"""A new title for an incident: `im.incident.state_change` may carry `title`; the incident
takes it, and the ticketing connectors rename their record."""

from __future__ import annotations

import json

import httpx

from incidents.connectors.jira.channel import actions
from incidents.connectors.servicenow.channel import update_body
from incidents.connectors.ticket_changes import RecordFields, read_change
from incidents.model.cloudevent import CloudEvent
from incidents.model.severity import Severity
from tests.support import STRUCTURED, event


def test_a_state_change_with_only_a_title_renames_the_incident(client: httpx.Client) -> None:
    """A state_change carrying just `title` (and its reason) is valid and sets the title,
    leaving status and severity as they were."""
    declared = event("im.incident.declare")
    r = client.post("/v1/events", content=json.dumps(declared), headers=STRUCTURED)
    incident = r.json()["accepted"][0]["incident"]
    renamed = event(
        "im.incident.state_change",
        {"title": "Checkout slow in eu-west", "reason": "narrowed down"},
        imincidentid=incident,
    )
    r = client.post("/v1/events", content=json.dumps(renamed), headers=STRUCTURED)
    assert r.status_code == 202, r.text
    found = client.get(f"/v1/incidents/{incident}").json()
    assert found["title"] == "Checkout slow in eu-west"
    assert (found["status"], found["severity"]) == ("open", "SEV2")


def test_an_empty_title_is_refused(client: httpx.Client) -> None:
    """The title, like a declared one, is a non-empty string (a 422 names the field)."""
    declared = event("im.incident.declare")
    r = client.post("/v1/events", content=json.dumps(declared), headers=STRUCTURED)
    incident = r.json()["accepted"][0]["incident"]
    empty = event("im.incident.state_change", {"title": "", "reason": "x"}, imincidentid=incident)
    r = client.post("/v1/events", content=json.dumps(empty), headers=STRUCTURED)
    assert r.status_code == 422 and "/title" in r.text


def _renamed() -> CloudEvent:
    return CloudEvent.from_dict(
        {"specversion": "1.0", "id": "e-9", "source": "/s", "type": "im.incident.state_change",
         "imincidentid": "INC-3", "data": {"title": "New name", "reason": "renamed"}}
    )  # fmt: skip


def test_servicenow_patches_the_short_description_of_a_renamed_incident() -> None:
    """A retitle becomes a PATCH of `short_description` (the reason in work notes)."""
    fields = RecordFields("INC-3", "New name", "", Severity.SEV2, "checkout")
    body = update_body(read_change(_renamed()), fields, {})
    assert body["short_description"] == "New name" and body["work_notes"] == "renamed"


def test_jira_edits_the_summary_of_a_renamed_incident() -> None:
    """A retitle makes Jira's edit (`PUT` summary and priority), and no transition."""
    assert actions(read_change(_renamed())) == ["edit"]
