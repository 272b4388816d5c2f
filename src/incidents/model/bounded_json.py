"""JSON read with a limit on how deep it nests, so that no body can make the gateway recurse
or allocate without bound (``INCIDENTS_MAX_JSON_DEPTH``)."""

from __future__ import annotations

from typing import Any

import orjson

from incidents.errors import JSONTooDeep, MalformedJSON


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (a bare
    object or array is one level). Walks level by level, so it needs no recursion."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below.extend(c for c in children if type(c) in (dict, list))
        level = below
    return False


def parse_json(body: bytes, what: str = "the body", *, max_depth: int) -> Any:
    """``body`` as JSON; MalformedJSON if it is not, JSONTooDeep if it nests deeper than
    ``max_depth`` (``INCIDENTS_MAX_JSON_DEPTH``)."""
    if not body or body.isspace():
        raise MalformedJSON(f"{what} is empty; expected JSON")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit, far above ours
            raise _too_deep(what, max_depth) from None
        raise MalformedJSON(f"{what} is not valid JSON: {exc}") from None
    # Fewer brackets than the limit cannot nest deeper than it: most bodies stop here.
    if body.count(b"[") + body.count(b"{") > max_depth and too_deep(value, max_depth):
        raise _too_deep(what, max_depth)
    return value


def check_depth(value: Any, max_depth: int, what: str = "the body") -> None:
    """JSONTooDeep if ``value``, JSON already parsed (a console form's), nests deeper than a
    body may."""
    if too_deep(value, max_depth):
        raise _too_deep(what, max_depth)


def _too_deep(what: str, max_depth: int) -> JSONTooDeep:
    return JSONTooDeep(
        f"{what} nests objects and arrays more than {max_depth} levels deep, "
        "the most this gateway accepts",
        extra={"max_depth": max_depth},
    )
