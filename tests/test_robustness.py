"""Whatever arrives, the answer is a clear problem, never a 500 or a hang."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
attribute_names = st.sampled_from(
    ["id", "source", "specversion", "type", "time", "subject", "data", "data_base64",
     "datacontenttype", "dataschema", "imincidentid", "imdataclass", "imvisibility",
     "dataclassification", "imcorrelationkey", "Bad", "x"]
)  # fmt: skip
events = st.dictionaries(attribute_names, json_values, max_size=10) | st.fixed_dictionaries(
    {
        "specversion": st.just("1.0"),
        "id": st.text(min_size=1, max_size=10),
        "source": st.just("/fuzz"),
        "type": st.sampled_from(["im.incident.declare", "im.incident.note", "im.alert.trigger"]),
        "data": json_values,
    },
    optional={"imincidentid": st.text(max_size=8), "imcorrelationkey": st.text(max_size=8)},
)
ALLOWED = {200, 202, 400, 403, 409, 413, 415, 422}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=events | st.lists(events, max_size=3), batch=st.booleans())
def test_any_json_body_gets_a_known_answer(client: httpx.Client, body: Any, batch: bool) -> None:
    """Random JSON in structured or batch mode is accepted or refused with a problem, never 500."""
    ct = "application/cloudevents-batch+json" if batch else "application/cloudevents+json"
    r = client.post("/v1/events", content=json.dumps(body), headers={"Content-Type": ct})
    assert r.status_code in ALLOWED, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.binary(max_size=300),
    ct=st.sampled_from(
        ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json"]
    ),
)
def test_any_bytes_get_a_known_answer(client: httpx.Client, raw: bytes, ct: str) -> None:
    """Random bytes, in any mode, never produce a 500."""
    headers = {"Content-Type": ct}
    if ct == "application/json":
        headers.update(
            {
                "ce-specversion": "1.0",
                "ce-id": "f",
                "ce-source": "/f",
                "ce-type": "im.incident.declare",
            }
        )
    r = client.post("/v1/events", content=raw, headers=headers)
    assert r.status_code in ALLOWED, r.text
