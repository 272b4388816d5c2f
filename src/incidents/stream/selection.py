"""Which events one stream asks for: ``types`` (exact names or prefixes ending in ``*``) and
``incident``, read from the query string with a 400 naming the parameter when malformed."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from incidents.errors import FieldError, InvalidRequest
from incidents.model.cloudevent import CloudEvent
from incidents.model.type_patterns import MAX_TYPE_PATTERNS, any_type_matches, is_type_pattern
from incidents.model.types import Extension

MAX_TYPES = MAX_TYPE_PATTERNS
MAX_INCIDENT = 200


def _bad(name: str, detail: str) -> InvalidRequest:
    return InvalidRequest(
        f"query parameter {name}: {detail}", errors=[FieldError(f"/query/{name}", detail)]
    )


@dataclass(frozen=True)
class Selection:
    types: tuple[str, ...] = ()  # empty: every type
    incident: str | None = None

    @classmethod
    def from_query(cls, params: QueryParams) -> Selection:
        types: list[str] = []
        for raw in params.getlist("types"):
            for part in raw.split(","):
                pattern = part.strip()
                if not is_type_pattern(pattern):
                    raise _bad("types", f"{pattern!r} is not a type name or a prefix ending in *")
                types.append(pattern)
        if len(types) > MAX_TYPES:
            raise _bad("types", f"at most {MAX_TYPES} patterns, not {len(types)}")
        incident = params.get("incident")
        if incident is not None and not 0 < len(incident) <= MAX_INCIDENT:
            raise _bad("incident", f"{incident[:40]!r} is not an incident id")
        return cls(tuple(dict.fromkeys(types)), incident)

    def matches(self, event: CloudEvent) -> bool:
        if self.incident is not None and event.get(Extension.INCIDENT_ID) != self.incident:
            return False
        if not self.types:
            return True
        return any_type_matches(self.types, event.type)
