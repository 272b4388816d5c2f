"""The schema registry: compiled once, with format checking, refusing broken files by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from jsonschema.exceptions import SchemaError

from incidents.model.schemas import SchemaLoadError, SchemaRegistry, check_schema_text

ROOT = Path(__file__).resolve().parent.parent


def copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", target)
    return target


def test_every_event_type_has_a_schema() -> None:
    """All eleven event types load, each with a compiled validator."""
    from incidents.model import EventType

    registry = SchemaRegistry.load(ROOT / "schemas")
    assert set(EventType.ALL) <= set(registry.event_types)


def test_every_incident_schema_marks_a_sensitive_field() -> None:
    """Each im.incident.* schema has at least one x-dataclass field."""
    registry = SchemaRegistry.load(ROOT / "schemas")
    for event_type in registry.event_types:
        if event_type.startswith("im.incident."):
            assert registry.marked_fields(event_type), event_type


def test_formats_are_enforced_in_data() -> None:
    """A format keyword in a data schema is checked (postmortem_url must be a URI)."""
    registry = SchemaRegistry.load(ROOT / "schemas")
    errors = registry.data_errors("im.incident.close", {"postmortem_url": "not a uri"})
    assert [e.pointer for e in errors] == ["/data/postmortem_url"]


def test_a_schema_that_is_not_json_stops_loading_naming_the_file(tmp_path: Path) -> None:
    """A broken file is reported with its path and the JSON error position."""
    schemas = copy_schemas(tmp_path)
    bad = schemas / "events" / "im.incident.note.json"
    bad.write_text("{ not json")
    with pytest.raises(SchemaLoadError, match=r"im\.incident\.note\.json.*line 1"):
        SchemaRegistry.load(schemas)


def test_a_schema_that_does_not_compile_stops_loading_naming_the_file(tmp_path: Path) -> None:
    """An invalid JSON Schema is reported with its path and where it is wrong."""
    schemas = copy_schemas(tmp_path)
    bad = schemas / "events" / "im.incident.ack.json"
    schema = json.loads(bad.read_text())
    schema["properties"]["note"]["type"] = "strang"
    bad.write_text(json.dumps(schema))
    with pytest.raises(SchemaLoadError, match=r"im\.incident\.ack\.json.*properties/note/type"):
        SchemaRegistry.load(schemas)


def test_an_unknown_x_dataclass_stops_loading(tmp_path: Path) -> None:
    """A field marked with a data class that does not exist is refused."""
    schemas = copy_schemas(tmp_path)
    bad = schemas / "events" / "im.incident.ack.json"
    schema = json.loads(bad.read_text())
    schema["properties"]["note"]["x-dataclass"] = "top-secret"
    bad.write_text(json.dumps(schema))
    with pytest.raises(SchemaLoadError, match="top-secret"):
        SchemaRegistry.load(schemas)


def test_a_missing_envelope_schema_stops_loading(tmp_path: Path) -> None:
    """Without schemas/cloudevent.json the gateway cannot start."""
    schemas = copy_schemas(tmp_path)
    (schemas / "cloudevent.json").unlink()
    with pytest.raises(SchemaLoadError, match=r"cloudevent\.json"):
        SchemaRegistry.load(schemas)


def test_a_schema_checked_once_is_not_checked_again_but_a_changed_one_is(tmp_path: Path) -> None:
    """Loading the same schema texts again skips the meta-schema check (it depends on the
    text alone); a file whose text changed since is checked afresh and refused by name."""
    schemas = copy_schemas(tmp_path)
    SchemaRegistry.load(schemas)
    before = check_schema_text.cache_info()
    SchemaRegistry.load(schemas)
    after = check_schema_text.cache_info()
    assert after.misses == before.misses and after.hits > before.hits
    broken = schemas / "events" / "im.incident.note.json"
    broken.write_text(json.dumps({"type": "object", "properties": {"text": {"type": 12}}}))
    with pytest.raises(SchemaLoadError, match=r"im\.incident\.note\.json is not a valid JSON"):
        SchemaRegistry.load(schemas)


def test_a_schema_that_failed_the_check_fails_it_every_time() -> None:
    """A refused text is not remembered as checked: each check of it raises."""
    text = json.dumps({"type": "nothing-of-the-kind"})
    for _ in range(2):
        with pytest.raises(SchemaError):
            check_schema_text(text)
