"""The outbound mapping tables read backwards: a vendor's status or priority as the incident
move or severity it stands for, with the subscription's ``formatsettings.mapping`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping

from incidents.connectors.ticket_changes import Move

# When one vendor value stands for several moves (Jira "Done" is resolve and close,
# ServiceNow state 2 is ack and reopen), the likeliest comes first.
_PREFERENCE = (Move.RESOLVE, Move.REOPEN, Move.ACK, Move.CLOSE, Move.MITIGATE)


def moves_for(status_table: Mapping[str, object], value: str) -> tuple[Move, ...]:
    """The moves whose vendor value is ``value`` (case-insensitive), likeliest first. A value
    that means resolve is never read as a close: resolving is what people do there."""
    found = {
        Move(row)
        for row, sent in status_table.items()
        if row in Move.__members__.values() and str(sent).casefold() == value.casefold()
    }
    if Move.RESOLVE in found:
        found.discard(Move.CLOSE)
    return tuple(m for m in _PREFERENCE if m in found)


def severity_for(severity_table: Mapping[str, object], value: object) -> str | None:
    """The severity whose vendor value is ``value`` (for ServiceNow an impact/urgency pair)."""
    for sev, sent in severity_table.items():
        if isinstance(sent, Mapping) and isinstance(value, Mapping):
            if all(str(value.get(k)) == str(v) for k, v in sent.items()):
                return sev
        elif isinstance(value, str) and str(sent).casefold() == value.casefold():
            return sev
    return None
