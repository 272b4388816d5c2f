"""What a vendor webhook says changed, read from its payload, before any rule is applied.

Each vendor parser returns one ``Inbound``: who did it, which record, and its ``Change``s.
A change names the incident field it touches (``Field``, the names ``formatsettings.owns``
uses), the value it asks for in the gateway's terms, and the vendor's own value, which is what
echo detection compares with the channel state (what the gateway last sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from incidents.connectors.sync_settings import Field
from incidents.connectors.ticket_changes import Move


@dataclass(frozen=True)
class Change:
    field: Field
    # STATUS: the moves it may mean, most likely first (ServiceNow state 2 is an ack or a
    # reopen, depending on the incident); SEVERITY: SEV1..SEV4; TITLE, NOTES: the text;
    # ROLES: the assignee of ``role``.
    moves: tuple[Move, ...] = ()
    value: str = ""
    role: str = ""
    said: str = ""  # what the system changed, in its own words ("status To Do -> Done")
    # The system's own value and the channel state key holding what the gateway last sent
    # for it (ServiceNow "state", Jira "status"/"priority", PagerDuty "action"/"severity").
    sent_key: str = ""
    vendor_value: str = ""


@dataclass(frozen=True)
class Inbound:
    system: str
    event_id: str  # the vendor's id of this notification (retries repeat it)
    actor: str  # the person in the system ("" when the system did it)
    record: str  # the record in the system: sys_id, issue key, PagerDuty incident id
    incident_hint: str = ""  # the incident id the payload names (correlation_id, dedup key)
    changes: tuple[Change, ...] = ()
    time: str | None = None
    snapshot: bool = False  # the payload is the whole record, not a change (ServiceNow)
    external: Mapping[str, object] = field(default_factory=dict)  # kept in each event


def text_of(node: object) -> str:
    """Plain text of a string or of an ADF document (Jira comment bodies may be either)."""
    if isinstance(node, str):
        return node
    if isinstance(node, Mapping):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        inner = "".join(text_of(c) for c in node.get("content") or [])
        return inner + ("\n" if node.get("type") == "paragraph" else "")
    if isinstance(node, list):
        return "".join(text_of(c) for c in node)
    return ""
