"""The fast envelope check never accepts what the full check (JSON Schema and the rules it
cannot state) rejects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.ingest.envelope import clearly_valid, full_check, validate_raw
from incidents.model.schemas import SchemaRegistry

REGISTRY = SchemaRegistry.load(Path(__file__).resolve().parent.parent / "schemas")

texts = st.sampled_from(
    ["", "x", "/src", "/a b", "urn:x:y", "https://h.example/p", "http://[bad", "%zz", "INC-1",
     "-bad", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+24:00", "2026-02-30T00:00:00Z",
     "2026-01-01T00:00:00.1234567891Z", "2026-01-01t00:00:00z", "public", "restricted",
     "secret", "application/json", "text/plain", "1.0", "0.3", "im.incident.note",
     "im.incident.declare", "im.alert.trigger", "a" * 600, "application/json\r\n",
     "application/json\n", "a\x07b", "x\x85", "y\ufffe", "/src\n", "INC-1\n"]
) | st.text(max_size=30)  # fmt: skip
values = (
    texts
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
    | st.lists(st.integers(), max_size=2)
)
names = st.sampled_from(
    ["id", "source", "specversion", "type", "time", "subject", "datacontenttype", "dataschema",
     "imincidentid", "imactor", "imcorrelationkey", "imdataclass", "imvisibility", "imtags",
     "imtenant", "dataclassification", "data_base64", "ext1", "Bad", "a" * 21]
)  # fmt: skip
base = st.fixed_dictionaries(
    {"specversion": st.just("1.0"), "id": texts, "source": texts, "type": texts}
)


@settings(max_examples=3000, deadline=None)
@given(event=base, extra=st.dictionaries(names, values, max_size=6))
def test_fast_check_agrees_with_the_schema(event: dict[str, Any], extra: dict[str, Any]) -> None:
    """Whenever the fast check passes an event, the full check finds nothing wrong with it."""
    raw = {**event, **extra}
    if clearly_valid(raw):
        assert full_check(REGISTRY, raw) == [], raw


def test_the_fast_check_passes_an_ordinary_event() -> None:
    """A typical producer event is judged by the fast path."""
    raw = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/monitoring",
        "type": "im.incident.note",
        "imincidentid": "INC-1",
        "time": "2026-01-01T10:00:00.5+01:00",
        "data": {"text": "x"},
    }
    assert clearly_valid(raw)
    assert validate_raw(REGISTRY, raw) == []
