"""Where the CloudEvents texts say exactly what a receiver does: nulls, header quoting,
Content-Type, the String, Integer and Timestamp types (each test names its section)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import STRUCTURED, assert_problem, event, pointers, sample_data


def stored(client: httpx.Client, event_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/events/{event_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()["event"]
    return found


def binary(client: httpx.Client, **headers: str) -> httpx.Response:
    """A binary-mode incident declaration with the given headers added or replaced."""
    sent = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "/t",
        "ce-type": "im.incident.declare",
        **headers,
    }
    body = json.dumps(sample_data("im.incident.declare"))
    return client.post("/v1/events", content=body, headers=sent)


# --- JSON format 2.2: null is unset --------------------------------------------------------


def test_null_optional_attributes_are_unset(client: httpx.Client) -> None:
    """JSON format 2.2: a null optional attribute is treated as unset, not refused."""
    ev = event(subject=None, time=None, dataschema=None, myext=None, imactor=None)
    r = client.post("/v1/events", content=json.dumps(ev), headers=STRUCTURED)
    assert r.status_code == 202, r.text
    found = stored(client, ev["id"])
    assert not {"subject", "time", "dataschema", "myext", "imactor"} & set(found)


def test_null_required_attribute_is_reported_missing_in_json_terms(client: httpx.Client) -> None:
    """JSON format 2.2: a null id is an unset id, so the answer says it is required (no None)."""
    r = client.post("/v1/events", content=json.dumps(event(id=None)), headers=STRUCTURED)
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert pointers(body) == ["/id"]
    assert "None" not in r.text and "required" in body["errors"][0]["detail"]


def test_wrong_types_are_described_with_json_values(client: httpx.Client) -> None:
    """Messages quote the value as JSON (true, not Python's True)."""
    r = client.post("/v1/events", content=json.dumps(event(subject=True)), headers=STRUCTURED)
    body = assert_problem(r, 400, "invalid-cloudevent")
    assert "/subject" in pointers(body)
    assert "True" not in r.text and "true is not of type string" in r.text


# --- HTTP binding 3.1.3.2: quoted header values ----------------------------------------------


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ('"alice smith"', "alice smith"),
        ('"say \\"hi\\""', 'say "hi"'),
        ('"back\\\\slash"', "back\\slash"),
        ('"a%20b"', "a b"),  # percent-decoding follows unquoting
    ],
)
def test_quoted_binary_header_values_are_unquoted_then_decoded(
    client: httpx.Client, sent: str, meant: str
) -> None:
    """HTTP binding 3.1.3.2: a double-quoted header value is unquoted and unescaped first."""
    assert binary(client, **{"ce-imactor": sent}).status_code == 202
    assert stored(client, "bin-1")["imactor"] == meant


def test_unterminated_quoted_header_value_is_400(client: httpx.Client) -> None:
    """HTTP binding 3.1.3.2: a value opening a quoted string it never closes is refused."""
    body = assert_problem(binary(client, **{"ce-imactor": '"alice'}), 400, "invalid-header")
    assert "ce-imactor" in body["detail"]


# --- HTTP binding 3.1.1: Content-Type is datacontenttype ------------------------------------


@pytest.mark.parametrize(
    "content_type", ['application/json; profile="a%41b"', 'application/json; p="100%25"']
)
def test_content_type_becomes_datacontenttype_verbatim(
    client: httpx.Client, content_type: str
) -> None:
    """HTTP binding 3.1.1: Content-Type is the datacontenttype as sent; no percent-decoding."""
    assert binary(client, **{"Content-Type": content_type}).status_code == 202
    assert stored(client, "bin-1")["datacontenttype"] == content_type


# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
# / "`" / "|" / "~" / DIGIT / ALPHA, written out here from the RFC, not from the schema.
TCHARS = "!#$%&'*+-.^_`|~" + "0aZ"


@pytest.mark.parametrize("char", list(TCHARS))
def test_every_token_character_is_accepted_in_a_media_type(client: httpx.Client, char: str) -> None:
    """RFC 9110 8.3.1: a media type's parameter name and value are tokens, and every token
    character may stand in them (``note=a%41`` included)."""
    for n, content_type in enumerate(
        (
            f"application/json; note=a{char}",
            f"application/json; n{char}=1",
            f"application/x{char}y+json",
        )
    ):
        event_id = f"token-{n}"
        response = binary(client, **{"Content-Type": content_type, "ce-id": event_id})
        assert response.status_code == 202, (content_type, response.text)
        assert stored(client, event_id)["datacontenttype"] == content_type


@pytest.mark.parametrize(
    "content_type",
    [
        'application/json; p="a\\"b"',
        'application/json; p="a space"',
        "application/json ;p=1",
    ],
)
def test_quoted_strings_and_spaces_around_the_separator_are_accepted(
    client: httpx.Client, content_type: str
) -> None:
    """RFC 9110 5.6.4 and 5.6.6: a quoted value may hold a quoted pair and a space; white space
    may stand around the ';'."""
    assert binary(client, **{"Content-Type": content_type}).status_code == 202


# --- Core Type System: String, Integer, Timestamp -------------------------------------------


@pytest.mark.parametrize(
    "header", ["ce-subject", "ce-imactor", "ce-myext"], ids=["subject", "imactor", "extension"]
)
@pytest.mark.parametrize("encoded", ["a%0Ab", "a%0D%0Ab", "a%07b", "a%C2%85b"])
def test_control_characters_decoded_from_headers_are_400(
    client: httpx.Client, header: str, encoded: str
) -> None:
    """Core spec, Type System, String: control characters are not allowed, however encoded."""
    body = assert_problem(binary(client, **{header: encoded}), 400, "invalid-cloudevent")
    assert "/" + header.removeprefix("ce-") in pointers(body)


@pytest.mark.parametrize("written", ["10.0", "1e3", "1E3", "-2.0"])
def test_integer_written_with_a_fraction_or_exponent_is_400(
    client: httpx.Client, written: str
) -> None:
    """JSON format 2.2: an Integer is only the integer component, so 10.0 and 1e3 are refused."""
    raw = json.dumps(event(myext="HOLE")).replace('"HOLE"', written)
    body = assert_problem(
        client.post("/v1/events", content=raw, headers=STRUCTURED), 400, "invalid-cloudevent"
    )
    assert pointers(body) == ["/myext"]


def test_a_leap_second_is_a_valid_time_only_where_one_can_be(client: httpx.Client) -> None:
    """RFC 3339 5.6-5.7 (core spec Timestamp): second 60 is valid at 23:59 UTC, nowhere else."""
    for when in ("2016-12-31T23:59:60Z", "1990-12-31T15:59:60-08:00"):
        ev = event(time=when)
        r = client.post("/v1/events", content=json.dumps(ev), headers=STRUCTURED)
        assert r.status_code == 202, r.text
        assert stored(client, ev["id"])["time"] == when
    for when in ("2016-12-31T12:00:60Z", "2016-12-31T23:59:61Z", "2016-12-31T23:58:60Z"):
        r = client.post("/v1/events", content=json.dumps(event(time=when)), headers=STRUCTURED)
        assert "/time" in pointers(assert_problem(r, 400, "invalid-cloudevent")), when
