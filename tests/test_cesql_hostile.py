"""Hostile sql filters through the real API: whatever the expression, registering it is a
201 or a 400 problem that points at it, never a 500."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import pointers
from tests.test_cesql_properties import texts

SINK = "https://127.0.0.1:9/hook"  # never called: these subscriptions are only registered

DEEP = [
    "(" * 1000 + "a = 1" + ")" * 1000,
    "NOT " * 1000 + "true",
    "NOT" + "(NOT" * 1000 + " true" + ")" * 1000,
    "-" * 1000 + "1 = 1",
    "- " * 1000 + "1 = 1",
    "a = " + "-(" * 1000 + "1" + ")" * 1000,
    "ABS(" * 1000 + "1" + ")" * 1000 + " = 1",
    "a" + " = a" * 1000,
    "1" + " + 1" * 1000 + " = 2",
    "a LIKE 'x'" + " LIKE 'x'" * 1000,
    " AND ".join(["a = 'x'"] * 1000),
    " AND ".join(["a = 1 OR b = 2"] * 1000),
    "a IN (" + ",".join(["1"] * 1000) + ")",
    "(" * 100_000,
    "NOT " * 100_000 + "true",
]


@pytest.mark.parametrize("sql", DEEP, ids=range(len(DEEP)))
def test_deep_or_long_sql_is_refused_with_a_problem_naming_it(
    client: httpx.Client, sql: str
) -> None:
    """Deep nesting and long chains are a 400 problem+json at /filters/N/sql, on create and
    on PATCH, never a 500."""
    filters = [{"exact": {"type": "t"}}, {"sql": sql}]
    sub = client.post("/v1/subscriptions", json={"sink": SINK}).json()
    for r in (
        client.post("/v1/subscriptions", json={"sink": SINK, "filters": filters}),
        client.patch(f"/v1/subscriptions/{sub['id']}", json={"filters": filters}),
    ):
        assert r.status_code == 400, r.text[:300]
        assert r.headers["content-type"] == "application/problem+json"
        assert pointers(r.json()) == ["/filters/1/sql"], r.text[:300]


def test_deep_json_in_a_subscription_body_is_a_problem(client: httpx.Client) -> None:
    """A filters value nested far deeper than the parser's recursion is a 4xx, never a 500."""
    for deep in ("[" * 100_000 + "]" * 100_000, '{"not":' * 50_000 + "{}" + "}" * 50_000):
        body = '{"sink": "' + SINK + '", "filters": [' + deep + "]}"
        r = client.post(
            "/v1/subscriptions", content=body, headers={"Content-Type": "application/json"}
        )
        assert 400 <= r.status_code < 500, r.text[:300]
        assert r.headers["content-type"] == "application/problem+json"


def test_control_and_non_ascii_characters_in_sql_strings_are_kept(client: httpx.Client) -> None:
    """NUL, control and non-ASCII characters inside string literals register and read back
    unchanged; a non-ASCII attribute name is a 400 naming the filter."""
    sql = "subject = 'a\x00b\x1b[31m\u2603\U0001f600' OR team LIKE '%\u00e9\x7f%'"
    created = client.post("/v1/subscriptions", json={"sink": SINK, "filters": [{"sql": sql}]})
    assert created.status_code == 201, created.text
    read = client.get(f"/v1/subscriptions/{created.json()['id']}").json()
    assert read["filters"] == [{"sql": sql}]
    r = client.post(
        "/v1/subscriptions", json={"sink": SINK, "filters": [{"sql": "\u00e9quipe = 'x'"}]}
    )
    assert r.status_code == 400 and pointers(r.json()) == ["/filters/0/sql"], r.text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=texts)
def test_any_sql_text_registers_or_is_a_400_naming_it(client: httpx.Client, sql: str) -> None:
    """Random strings and token soups as an sql filter are a 201 or a 400 problem at
    /filters/0/sql, never a 500."""
    r = client.post("/v1/subscriptions", json={"sink": SINK, "filters": [{"sql": sql}]})
    assert r.status_code in (201, 400), r.text[:300]
    if r.status_code == 400:
        assert r.headers["content-type"] == "application/problem+json"
        assert pointers(r.json()) == ["/filters/0/sql"], r.text[:300]
