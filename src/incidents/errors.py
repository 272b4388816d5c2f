"""The error tree. Every error the gateway reports is one of these, rendered as RFC 9457
problem details (``application/problem+json``) by a single handler in ``app.py``.

    IncidentsError                      500 internal
    ├── BadRequest                      400 bad-request
    │   ├── MalformedJSON               400 malformed-json
    │   │   └── JSONTooDeep             400 json-too-deep        (names max_depth)
    │   ├── InvalidCloudEvent           400 invalid-cloudevent   (errors: pointer per problem)
    │   ├── InvalidHeader               400 invalid-header
    │   └── InvalidRequest              400 invalid-request      (bad query or body fields)
    ├── Unauthorized                    401 unauthorized
    ├── Forbidden                       403 forbidden
    │   ├── PolicyDenied                403 policy-denied        (names the rule)
    │   └── CsrfRefused                 403 csrf-refused         (a console form without its token)
    ├── NotFound                        404 not-found
    ├── MethodNotAllowed                405 method-not-allowed   (Allow: every method of the path)
    ├── RequestTimeout                  408 request-timeout      (the head did not arrive in time)
    │   └── BodyTimeout                 408 body-timeout         (the body did not arrive in time)
    ├── Conflict                        409 conflict
    │   └── IllegalTransition           409 illegal-transition   (lists the allowed moves)
    ├── PayloadTooLarge                 413 payload-too-large    (names the limit)
    │   └── TooManyEvents               413 too-many-events      (a batch over max_batch_events)
    ├── UnsupportedMediaType            415 unsupported-media-type
    ├── UnprocessableEvent              422 schema-validation    (errors: pointer per problem)
    │   ├── UnknownEventType            422 unknown-event-type
    │   └── CrossPartition              422 cross-partition      (alert and incident apart)
    ├── RateLimited                     429 rate-limited         (Retry-After)
    ├── HeadersTooLarge                 431 headers-too-large    (names the limit)
    └── ServiceUnavailable              503 service-unavailable  (Retry-After)
        ├── StoreUnavailable            503 store-unavailable    (Redis cannot be reached)
        └── RedisFull                   503 redis-full           (Redis at maxmemory refuses writes)

Lower-layer errors (Redis, JSON decoding) are converted to these at one boundary each.
A problem lists at most ``MAX_LISTED_ERRORS`` field errors and counts the rest in
``errors_not_listed``, so a bad batch gets a short answer however much was wrong with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypedDict, Unpack

PROBLEM_BASE = "urn:incidents:problem:"
MAX_LISTED_ERRORS = 100


@dataclass(frozen=True)
class FieldError:
    """One problem with one part of the input, located by a JSON pointer (RFC 6901)."""

    pointer: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "detail": self.detail}


def pointer(*parts: str | int) -> str:
    """Build a JSON pointer from path parts, escaping ``~`` and ``/``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class ErrorOptions(TypedDict, total=False):
    """What every error takes besides its detail (see ``IncidentsError``)."""

    errors: Iterable[FieldError]
    extra: Mapping[str, object] | None
    headers: Mapping[str, str] | None


class IncidentsError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: Iterable[FieldError] = (),
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug

    def to_problem(self, instance: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.to_dict() for e in self.errors[:MAX_LISTED_ERRORS]]
            if len(self.errors) > MAX_LISTED_ERRORS:
                body["errors_not_listed"] = len(self.errors) - MAX_LISTED_ERRORS
        body.update(self.extra)
        return body


class BadRequest(IncidentsError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class MalformedJSON(BadRequest):
    slug = "malformed-json"
    title = "Malformed JSON"


class JSONTooDeep(MalformedJSON):
    slug = "json-too-deep"
    title = "JSON nested too deep"


class InvalidCloudEvent(BadRequest):
    slug = "invalid-cloudevent"
    title = "Not a valid CloudEvent"


class InvalidHeader(BadRequest):
    slug = "invalid-header"
    title = "Invalid header"


class InvalidRequest(BadRequest):
    slug = "invalid-request"
    title = "Invalid request"


class Unauthorized(IncidentsError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str, **kwargs: Unpack[ErrorOptions]) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="incidents"'})
        super().__init__(detail, **kwargs)


class Forbidden(IncidentsError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class CsrfRefused(Forbidden):
    """A console form without its session's CSRF token (shown as a 403 page)."""

    slug = "csrf-refused"
    title = "CSRF token missing or wrong"


class PolicyDenied(Forbidden):
    slug = "policy-denied"
    title = "Denied by policy"


class NotFound(IncidentsError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(IncidentsError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class RequestTimeout(IncidentsError):
    status = 408
    slug = "request-timeout"
    title = "Request timed out"

    def __init__(self, detail: str, **kwargs: Unpack[ErrorOptions]) -> None:
        # The rest of the request may still arrive: the connection cannot carry another one.
        kwargs.setdefault("headers", {"Connection": "close"})
        super().__init__(detail, **kwargs)


class BodyTimeout(RequestTimeout):
    slug = "body-timeout"
    title = "Request body timed out"


class Conflict(IncidentsError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class IllegalTransition(Conflict):
    slug = "illegal-transition"
    title = "Illegal incident state transition"


class PayloadTooLarge(IncidentsError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class TooManyEvents(PayloadTooLarge):
    slug = "too-many-events"
    title = "Too many events in one request"


class UnsupportedMediaType(IncidentsError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class UnprocessableEvent(IncidentsError):
    status = 422
    slug = "schema-validation"
    title = "Event data fails its schema"


class UnknownEventType(UnprocessableEvent):
    slug = "unknown-event-type"
    title = "Unknown event type"


class CrossPartition(UnprocessableEvent):
    """An event that would tie together what two partitions hold (INCIDENTS_PARTITIONS)."""

    slug = "cross-partition"
    title = "Event spans partitions"


class RateLimited(IncidentsError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(
        self, detail: str, *, retry_after: int = 1, **kwargs: Unpack[ErrorOptions]
    ) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kwargs)


class HeadersTooLarge(IncidentsError):
    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"

    def __init__(self, detail: str, **kwargs: Unpack[ErrorOptions]) -> None:
        kwargs.setdefault("headers", {"Connection": "close"})
        super().__init__(detail, **kwargs)


class ServiceUnavailable(IncidentsError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(
        self, detail: str, *, retry_after: int = 2, **kwargs: Unpack[ErrorOptions]
    ) -> None:
        kwargs.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kwargs)


class StoreUnavailable(ServiceUnavailable):
    slug = "store-unavailable"
    title = "Event store unavailable"


class RedisFull(ServiceUnavailable):
    """Redis reached its ``maxmemory`` and, under ``noeviction``, refuses writes: nothing was
    stored; the request can be retried once an operator makes room."""

    slug = "redis-full"
    title = "Redis is full"


def all_error_classes() -> list[type[IncidentsError]]:
    """Every class in the tree, base first (used by the docs and by a test)."""
    seen: list[type[IncidentsError]] = []
    stack: list[type[IncidentsError]] = [IncidentsError]
    while stack:
        cls = stack.pop(0)
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
