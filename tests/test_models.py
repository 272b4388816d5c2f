from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from incidents.model import (
    TRANSITIONS,
    CloudEvent,
    EventType,
    Extension,
    Incident,
    IncidentStatus,
    Severity,
    TimelineEvent,
)
from incidents.model.cloudevent import StoredEvent

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["SEV1", "SEV-1", "sev1", "P1", "p1", " Sev_1 "])
def test_severity_aliases_parse_to_canonical_output(raw: str) -> None:
    """Every documented spelling of severity 1 reads as SEV1 and prints as SEV1."""
    assert Severity.parse(raw) is Severity.SEV1
    assert str(Severity.parse(raw)) == "SEV1"


@pytest.mark.parametrize("raw", ["SEV5", "P0", "critical", "", 1, None])
def test_severity_rejects_unknown_values_quoting_them(raw: object) -> None:
    """A value that is not a severity is refused with a message that quotes it."""
    with pytest.raises(ValueError, match=repr(raw).replace("(", r"\(")):
        Severity.parse(raw)


def test_transition_table_matches_the_contract() -> None:
    """The allowed moves are exactly the six in the design, and closed is final."""
    moves = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert moves == {
        ("open", "mitigated"),
        ("open", "resolved"),
        ("mitigated", "resolved"),
        ("mitigated", "open"),
        ("resolved", "open"),
        ("resolved", "closed"),
    }
    assert not IncidentStatus.CLOSED.allowed_moves()
    assert IncidentStatus.OPEN.can_move_to(IncidentStatus.RESOLVED)
    assert not IncidentStatus.OPEN.can_move_to(IncidentStatus.CLOSED)


def test_there_are_eleven_event_types_and_six_extensions() -> None:
    """The wire vocabulary has the 11 types and 6 extension names of the design."""
    assert len(set(EventType.ALL)) == 11
    assert all(t.startswith(("im.incident.", "im.alert.")) for t in EventType.ALL)
    assert len(set(Extension.ALL)) == 6
    assert all(name.isalnum() and name.islower() for name in Extension.ALL)


def test_incident_round_trips_through_json() -> None:
    """An incident survives to_dict -> JSON -> from_dict unchanged."""
    incident = Incident(
        id="INC-7",
        title="Checkout down",
        severity=Severity.parse("P2"),
        status=IncidentStatus.MITIGATED,
        service="checkout",
        roles={"commander": "alice", "comms": None, "scribe": "bob"},
        labels={"team": "payments"},
        external_refs={"jira": "OPS-1"},
        declared_at=T0,
        acknowledged_at=T0 + timedelta(minutes=2),
        mitigated_at=T0 + timedelta(minutes=30),
        updated_at=T0 + timedelta(minutes=30),
        version=4,
    )
    again = Incident.from_dict(json.loads(json.dumps(incident.to_dict())))
    assert again == incident
    assert again.time_to_acknowledge == 120.0
    assert again.time_to_mitigate == 1800.0
    assert again.time_to_resolve is None


def test_timeline_event_round_trips_through_json() -> None:
    """A timeline entry survives to_dict -> JSON -> from_dict unchanged."""
    entry = TimelineEvent(
        id="e1",
        incident_id="INC-1",
        type=EventType.INCIDENT_NOTE,
        source="/tests",
        time=T0,
        sequence=9,
        actor="alice",
        title="note",
        body="rolled back",
        data={"text": "rolled back"},
    )
    assert TimelineEvent.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry


def test_cloudevent_and_stored_event_round_trip_through_json() -> None:
    """A stored CloudEvent keeps its attributes, data, sequence and ingest time."""
    ce = CloudEvent(
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "im.incident.note", "x": 3},
        data={"text": "hi"},
    )
    stored = StoredEvent(ce, 12, T0, "admin")
    again = StoredEvent.from_dict(json.loads(json.dumps(stored.to_dict())))
    assert again.event.to_dict() == ce.to_dict()
    assert (again.sequence, again.ingested_at, again.principal) == (12, T0, "admin")


@pytest.mark.parametrize(
    "attributes",
    [
        {"specversion": "1.0", "id": "1", "source": "/s", "type": "im.incident.note"},
        {"id": "1", "source": "/s", "specversion": "1.0", "type": "im.incident.note"},
    ],
)
def test_stored_event_json_reads_back_byte_for_byte(attributes: dict[str, str]) -> None:
    """An event kept in Redis's compact form reads back with the same JSON, attribute order too."""
    from incidents.store.events import microseconds, stored_event, stored_tail

    stored = StoredEvent(CloudEvent(attributes, data={"text": "hi"}), 12, T0, "")
    kept = b"[12" + stored_tail(stored.event.to_dict(), microseconds(T0))
    assert len(kept) < len(orjson.dumps(stored.to_dict()))
    again = stored_event(kept)
    assert orjson.dumps(again.to_dict()) == orjson.dumps(stored.to_dict())


def test_every_attribute_name_is_kept_short_and_read_back_in_place() -> None:
    """A stored event keeps each known attribute name as one letter and reads back with the
    same names in the same order, data_base64 and unknown extensions too."""
    from incidents.store.events import SHORT_NAMES, microseconds, stored_event, stored_tail

    names = [n for n in SHORT_NAMES if n not in ("data", "data_base64")]
    attributes = {"specversion": "1.0", **{n: f"v-{n}" for n in names}, "zzext": "z"}
    for data, base64 in (({"k": [1, "two"]}, None), (None, "AAEC")):
        stored = StoredEvent(CloudEvent(attributes, data, base64), 3, T0, "p")
        raw = b"[3" + stored_tail(stored.event.to_dict(), microseconds(T0), "p")
        kept = orjson.loads(raw)[3]
        assert set(kept) <= set(SHORT_NAMES.values()) | {"zzext"}
        assert orjson.dumps(stored_event(raw).to_dict()) == orjson.dumps(stored.to_dict())
    assert len(set(SHORT_NAMES.values())) == len(SHORT_NAMES)


def test_an_attribute_named_like_a_short_name_is_refused_not_stored_ambiguously() -> None:
    """An event whose attribute name is one upper-case letter cannot be stored (it would read
    back as another attribute); an archive line holding one is an error naming it."""
    from incidents.archive.records import RecordError, parse_line
    from incidents.store.events import stored_tail

    with pytest.raises(ValueError, match="upper-case"):
        stored_tail({"id": "1", "source": "/s", "type": "t", "I": "x"}, 0)
    line: dict[str, object] = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    line |= {"I": "x", "imsequence": 1, "imingestedat": T0.isoformat()}
    with pytest.raises(RecordError, match="'I'"):
        parse_line(orjson.dumps(line), 1)


def test_cloudevent_refuses_both_data_forms() -> None:
    """A CloudEvent value cannot hold data and data_base64 at once."""
    with pytest.raises(ValueError, match="both"):
        CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, {}, "AA==")


def test_incident_rejects_a_bad_status_quoting_it() -> None:
    """Building an incident with an unknown status fails and names the value."""
    with pytest.raises(ValueError, match="'paused'"):
        Incident(id="INC-1", title="t", severity=Severity.SEV1, status="paused")  # type: ignore[arg-type]  # the bad value is the point


def test_parsed_incidents_answer_only_for_the_exact_json() -> None:
    """The memo of parsed incidents is keyed by content: other bytes for the key are a miss."""
    from incidents.lifecycle.incident_writes import ParsedIncidents

    one = Incident(id="INC-1", title="a", severity=Severity.SEV2)
    two = one.evolve(title="b", version=1)
    memo = ParsedIncidents(size=2)
    memo.put("k", orjson.dumps(one.to_dict()), one)
    assert memo.get("k", orjson.dumps(one.to_dict())) == one
    assert memo.get("k", orjson.dumps(two.to_dict())) is None
    memo.put("k2", b"{}", two)
    memo.put("k3", b"{}", two)  # over size: the oldest entry goes
    assert memo.get("k", orjson.dumps(one.to_dict())) is None
    assert memo.get("k3", b"{}") == two


def test_stored_plan_reads_what_is_already_stored() -> None:
    """An event's stored meta JSON reads back as a typed plan and is written back unchanged."""
    from incidents.model.cloudevent import StoredEvent
    from incidents.model.plan import AlertOutcome, LinkedBy, Plan

    meta = {
        "alert": {
            "key": "disk",
            "outcome": "deduplicated",
            "declared": "INC-7",
            "linked_by": "gateway",
            "number": 2,
            "status": "firing",
            "count": 3,
            "incident": "INC-7",
        },
        "fanout": False,
    }
    raw = {
        "event": {"id": "1", "source": "/s", "specversion": "1.0", "type": "im.alert.trigger"},
        "sequence": 5,
        "ingested_at": "2024-01-01T00:00:00+00:00",
        "principal": "p",
        "meta": meta,
    }
    stored = StoredEvent.from_dict(raw)
    assert stored.plan.alert is not None and not stored.plan.fanout
    assert stored.plan.alert.outcome is AlertOutcome.DEDUPLICATED
    assert stored.plan.alert.linked_by is LinkedBy.GATEWAY
    assert stored.to_dict()["meta"] == meta
    ignored = {"alert": {"key": "k", "outcome": "ignored", "reason": "none open"}, "fanout": False}
    assert Plan.from_dict(ignored).to_dict() == ignored
    unlinked = {
        "alert": {
            "key": "k",
            "outcome": "opened",
            "number": 1,
            "status": "firing",
            "count": 1,
            "incident": None,
        }
    }
    assert Plan.from_dict(unlinked).to_dict() == unlinked
    assert Plan.from_dict({}).fanout and Plan.from_dict(None).to_dict() == {}


def test_an_evolved_incident_writes_the_document_built_from_scratch() -> None:
    """Evolving converts only the changed fields, and its JSON equals a freshly built one's."""
    incident = Incident(id="INC-8", title="t", severity=Severity.SEV2, declared_at=T0, version=1)
    incident.to_dict()  # the parent's document is built, so the child's is patched from it
    note = incident.evolve(version=2, updated_at=(T0 + timedelta(minutes=1)).isoformat())
    moved = note.evolve(
        version=3,
        status="Mitigated",
        severity="sev1",
        roles={"commander": "alice"},
        mitigated_at=T0 + timedelta(minutes=5),
    )
    for evolved in (note, moved):
        rebuilt = Incident.from_dict(evolved.to_dict())
        assert rebuilt == evolved
        assert orjson.dumps(rebuilt.to_dict()) == orjson.dumps(evolved.to_dict())
    assert note.updated_at == T0 + timedelta(minutes=1)
    assert moved.status is IncidentStatus.MITIGATED and moved.severity is Severity.SEV1
    assert moved.to_dict()["metrics"]["time_to_mitigate"] == 300.0
    mine = moved.to_dict()
    mine["roles"]["commander"] = "mallory"  # a caller's copy, not the incident's
    assert moved.to_dict()["roles"]["commander"] == "alice"


def test_evolve_refuses_bad_values_quoting_them() -> None:
    """A bad status, severity, version or unknown field is refused as the constructor does."""
    incident = Incident(id="INC-9", title="t", severity=Severity.SEV3)
    with pytest.raises(ValueError, match="'paused'"):
        incident.evolve(status="paused")
    with pytest.raises(ValueError, match="'SEV9'"):
        incident.evolve(severity="SEV9")
    with pytest.raises(ValueError, match="-1"):
        incident.evolve(version=-1)
    with pytest.raises(TypeError, match="colour"):
        incident.evolve(colour="red")


def test_an_archive_line_whose_id_holds_a_control_character_is_an_error() -> None:
    """An id or source with a control character (no CloudEvents string holds one) is refused
    on import, naming the attribute."""
    from incidents.archive.records import RecordError, parse_line

    for attribute in ("id", "source"):
        line: dict[str, object] = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
        line |= {attribute: "a\nb", "imsequence": 1, "imingestedat": T0.isoformat()}
        with pytest.raises(RecordError, match=f"its {attribute} holds a control character"):
            parse_line(orjson.dumps(line), 1)
