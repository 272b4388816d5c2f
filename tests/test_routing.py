"""Matching events to subscriptions: types, source, filter dialects, and the type index."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from incidents.errors import InvalidRequest
from incidents.model.cloudevent import CloudEvent
from incidents.model.filters import AllOf, parse_filters, sql_failure
from incidents.model.sql_filter import Sql, SqlFailure
from incidents.store.redis import connect_async
from incidents.subscriptions.spec import Spec, parse_spec
from incidents.subscriptions.subscription import (
    SubscriptionCache,
    SubscriptionStore,
    new_subscription,
)

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def ce(type_: str = "im.incident.note", **attrs: str | int | bool) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": "1", "source": "/mon", "type": type_, **attrs})


def matches(event: CloudEvent, **fields: object) -> bool:
    spec, _ = parse_spec({"sink": "https://example.com/hook", **fields})
    return new_subscription(spec, "admin", NOW).matches(event)


def test_types_are_exact_names_or_prefixes() -> None:
    """An exact type matches only itself; a type ending in * matches by prefix."""
    assert matches(ce("im.incident.note"), types=["im.incident.note"])
    assert not matches(ce("im.incident.declare"), types=["im.incident.note"])
    assert matches(ce("im.alert.trigger"), types=["im.alert.*"])
    assert not matches(ce("im.incident.note"), types=["im.alert.*"])
    assert matches(ce("anything"), types=[])


def test_source_is_an_exact_match() -> None:
    """A subscription with a source receives only events from that source."""
    assert matches(ce(), source="/mon")
    assert not matches(ce(), source="/other")


def test_every_dialect_over_extension_attributes() -> None:
    """exact, prefix, suffix, all, any and not all apply to extensions as to core attributes."""
    event = ce(imincidentid="INC-42", imtags="db,eu-west", imactor="alice")
    assert matches(event, filters=[{"exact": {"imactor": "alice"}}])
    assert matches(event, filters=[{"prefix": {"imincidentid": "INC-4"}}])
    assert matches(event, filters=[{"suffix": {"imtags": "eu-west"}}])
    assert not matches(event, filters=[{"exact": {"imactor": "bob"}}])
    assert matches(
        event,
        filters=[
            {"all": [{"exact": {"imactor": "alice"}}, {"not": {"prefix": {"type": "im.alert."}}}]}
        ],
    )
    assert matches(
        event, filters=[{"any": [{"exact": {"imactor": "bob"}}, {"suffix": {"id": "1"}}]}]
    )
    assert not matches(
        event, filters=[{"exact": {"imactor": "alice"}}, {"exact": {"source": "/x"}}]
    )
    assert not matches(event, filters=[{"exact": {"imcorrelationkey": "x"}}])


def test_an_unsupported_dialect_is_rejected_by_name() -> None:
    """A dialect the gateway does not know: the error names it and points at it."""
    with pytest.raises(InvalidRequest, match="'jsonpath'") as caught:
        parse_spec({"sink": "https://example.com", "filters": [{"jsonpath": "$.a"}]})
    assert caught.value.errors[0].pointer == "/filters/0/jsonpath"


def test_sql_filters_match_on_extension_attributes_of_every_type() -> None:
    """The sql dialect sees strings, integers and booleans as CESQL values, alone or beside
    other dialects, nested or not."""
    event = ce(imseverity="SEV2", imservice="payments-api", imretries=3, imurgent=True)
    sql = "imseverity IN ('SEV1','SEV2') AND imservice LIKE 'payments%'"
    assert matches(event, filters=[{"sql": sql}])
    assert not matches(ce(imseverity="SEV3", imservice="payments-api"), filters=[{"sql": sql}])
    assert matches(event, filters=[{"sql": "imretries > 2 AND imurgent"}])
    assert matches(event, filters=[{"sql": "imretries = '3'"}, {"exact": {"imretries": "3"}}])
    assert matches(event, filters=[{"any": [{"exact": {"imservice": "x"}}, {"sql": "TRUE"}]}])
    assert not matches(event, filters=[{"not": {"sql": "imurgent"}}])


def test_an_sql_error_is_no_match_and_says_why() -> None:
    """A missing attribute, a failed cast or a division by zero is no match (and not is
    true of it, as of any no match); the compiled filter names the expression and error."""
    event = ce(imservice="payments", imretries=0)
    assert not matches(event, filters=[{"sql": "imseverity = 'SEV1'"}])
    assert not matches(event, filters=[{"sql": "INT(imservice) > 1"}])
    assert not matches(event, filters=[{"sql": "10 / imretries > 1"}])
    assert matches(event, filters=[{"not": {"sql": "10 / imretries > 1"}}])
    parsed, _ = parse_filters([{"sql": "10 / imretries > 1"}])
    assert isinstance(parsed, AllOf)
    (compiled,) = parsed.parts
    assert isinstance(compiled, Sql)
    why = compiled.failure(event.attributes)
    assert why is not None and "10 / imretries > 1" in why and "math error" in why
    assert compiled.failure(ce(imretries=5).attributes) is None
    nested, _ = parse_filters([{"any": [{"exact": {"id": "x"}}, {"not": {"sql": "a = 1"}}]}])
    why = sql_failure(nested, event.attributes)
    assert why is not None and "'a = 1'" in why and "missingAttribute" in why
    assert sql_failure(nested, ce(a=2).attributes) is None


def decided(
    event: CloudEvent, filters: list[dict[str, object]], **fields: object
) -> bool | SqlFailure:
    spec, _ = parse_spec({"sink": "https://example.com/hook", "filters": filters, **fields})
    sub = new_subscription(spec, "admin", NOW)
    found = sub.decide(event)
    assert bool(found) is sub.matches(event)  # the same answer as matching's
    return found


def test_routing_tells_an_sql_error_from_a_plain_no_match() -> None:
    """decide gives a falsy SqlFailure naming the expression and error for a failed cast or
    a division by zero, but plain False for a missing attribute, a false expression or a
    failure that a not, an any or an earlier all part makes moot."""
    event = ce(myext="abc", imretries=0)
    failure = decided(event, [{"sql": "INT(myext) > 3"}])
    assert isinstance(failure, SqlFailure) and not failure
    assert "'INT(myext) > 3'" in str(failure) and "cast error" in str(failure)
    assert isinstance(decided(event, [{"sql": "10 / imretries > 1"}]), SqlFailure)
    assert decided(event, [{"sql": "INT(other) > 3"}]) is False  # a missing attribute
    assert decided(ce(myext="5"), [{"sql": "INT(myext) > 3"}]) is True
    assert decided(ce(myext="2"), [{"sql": "INT(myext) > 3"}]) is False
    assert decided(event, [{"not": {"sql": "INT(myext) > 3"}}]) is True
    assert decided(event, [{"any": [{"sql": "INT(myext) > 3"}, {"exact": {"myext": "abc"}}]}])
    nested = decided(event, [{"any": [{"exact": {"myext": "x"}}, {"sql": "INT(myext) > 3"}]}])
    assert isinstance(nested, SqlFailure)
    assert decided(event, [{"exact": {"myext": "x"}}, {"sql": "INT(myext) > 3"}]) is False
    wrong_type = ce("other.type", myext="abc")
    assert decided(wrong_type, [{"sql": "INT(myext) > 3"}], types=["im.*"]) is False


def test_a_stored_sql_filter_that_no_longer_compiles_matches_nothing() -> None:
    """A subscription read back with an expression the engine now refuses receives nothing."""
    spec = Spec(sink="https://example.com", filters=({"sql": "a = (1"},))
    assert not new_subscription(spec, "admin", NOW).matches(ce(a=1))


@pytest.mark.parametrize(
    ("sql", "detail"),
    [
        ("imseverity IN ('SEV1' 'SEV2')", "expected ',' or ')' to close the IN list"),
        ("imservice LIKE payments", "(at position 16)"),
        ("LOWER(imservice, 1) = 'x'", "no function LOWER taking 2 argument(s)"),
        ("LENGTH(imservice)", "gives an Integer; a filter needs a Boolean"),
        ("", "a CloudEvents SQL expression"),
        ("a IN (" + ", ".join(["1"] * 257) + ")", "at most 256 values"),
        ("a = '" + "x" * 4096 + "'", "at most 4096"),
        ("(" * 33 + "a" + ")" * 33, "more than 32 deep"),
    ],
)
def test_a_bad_sql_filter_is_refused_naming_the_filter_and_the_problem(
    sql: str, detail: str
) -> None:
    """Each bad expression is a 400 problem at /filters/<n>/sql whose detail says why."""
    with pytest.raises(InvalidRequest) as caught:
        parse_spec({"sink": "https://example.com", "filters": [{"exact": {}}, {"sql": sql}]})
    found = {e.pointer: e.detail for e in caught.value.errors}
    assert detail in found["/filters/1/sql"]


def test_malformed_filters_are_located() -> None:
    """Two dialects in one expression, an empty any, and a non-string value are each reported."""
    _, problems = parse_filters(
        [{"exact": {"type": "a"}, "prefix": {"type": "b"}}, {"any": []}, {"exact": {"type": 3}}]
    )
    assert [p.pointer for p in problems] == [
        "/filters/0",
        "/filters/1/any",
        "/filters/2/exact/type",
    ]


def test_matching_reads_only_the_indexed_candidates(redis_url: str) -> None:
    """With 2,000 subscriptions to other types, routing an event loads only the matching ones."""

    async def run() -> tuple[list[str], int]:
        redis = connect_async(redis_url)
        store = SubscriptionStore(redis)
        try:
            for i in range(2000):
                spec = Spec(sink="https://example.com", types=(f"other.type.{i}",))
                await store.save(new_subscription(spec, "admin", NOW))
            wanted = [
                new_subscription(Spec(sink="https://example.com", types=t), "admin", NOW)
                for t in (("im.incident.note",), ("im.incident.*",), ())
            ]
            for sub in wanted:
                await store.save(sub)
            cache = SubscriptionCache()
            await cache.sync(store)
            (found,) = await cache.matching(store, [ce("im.incident.note")])
            return sorted(s.id for s in found.matched), cache.loaded
        finally:
            await redis.aclose()

    found, loaded = asyncio.run(run())
    assert len(found) == 3
    assert loaded == 3
