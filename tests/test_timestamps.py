"""RFC 3339 times, leap seconds included, as the incident timeline reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from incidents.model.timestamps import parse_time
from tests.support import event

CE_JSON = {"Content-Type": "application/cloudevents+json"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)),
        ("2016-12-31T23:59:60.25Z", datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)),
        (
            "1990-12-31T15:59:60-08:00",
            datetime(1990, 12, 31, 15, 59, 59, 999999, timezone(timedelta(hours=-8))),
        ),
        ("2020-02-29T12:00:00.5+01:00", datetime(2020, 2, 29, 11, 0, 0, 500000, UTC)),
    ],
)
def test_a_leap_second_reads_as_the_last_instant_of_its_minute(
    raw: str, expected: datetime
) -> None:
    """RFC 3339 5.6 allows second 60; it reads as the instant just before the next minute."""
    assert parse_time(raw) == expected


def test_not_a_time_is_a_value_error() -> None:
    """Anything that is not a time still raises ValueError."""
    with pytest.raises(ValueError):
        parse_time("yesterday:60")


def test_the_timeline_keeps_a_leap_second_time(client: httpx.Client) -> None:
    """An event at a leap second is on the timeline at that time, not at its ingest time."""
    declare = event("im.incident.declare", time="2016-12-31T23:59:60Z")
    r = client.post("/v1/events", content=json.dumps(declare), headers=CE_JSON)
    assert r.status_code == 202, r.text
    incident = r.json()["accepted"][0]["incident"]
    timeline = client.get(f"/v1/incidents/{incident}/timeline").json()
    entry = timeline["items"][0] if "items" in timeline else timeline["timeline"][0]
    assert parse_time(entry["time"]) == datetime(2016, 12, 31, 23, 59, 59, 999999, UTC)
