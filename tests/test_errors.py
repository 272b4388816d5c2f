from __future__ import annotations

import pytest

from incidents import errors
from incidents.errors import IncidentsError, all_error_classes


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_as_problem_details(cls: type[IncidentsError]) -> None:
    """Each error class renders RFC 9457 fields with its own status and a stable type URI."""
    exc = cls("something specific went wrong")
    body = exc.to_problem("/v1/x")
    assert body["status"] == cls.status
    assert body["type"] == errors.PROBLEM_BASE + cls.slug
    assert body["title"] == cls.title
    assert body["detail"] == "something specific went wrong"
    assert body["instance"] == "/v1/x"
    assert 400 <= cls.status <= 599


def test_type_uris_are_unique_per_class() -> None:
    """No two error classes share a problem type."""
    uris = [c.type_uri() for c in all_error_classes()]
    assert len(uris) == len(set(uris))


def test_every_class_is_drawn_in_the_module_docstring() -> None:
    """The error tree in the module docstring names every class in the tree."""
    doc = errors.__doc__ or ""
    missing = [c.__name__ for c in all_error_classes() if c.__name__ not in doc]
    assert not missing


def test_retryable_errors_carry_retry_after() -> None:
    """429 and 503 problems tell the client when to come back."""
    assert errors.RateLimited("slow down", retry_after=7).headers["Retry-After"] == "7"
    assert errors.StoreUnavailable("down").headers["Retry-After"].isdigit()
