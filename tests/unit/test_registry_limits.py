"""The schema-registry edge against a hostile reporter: writer schemas whose array items take no bytes are
refused (``schema_not_allowed``), a batch asks the registry about a bounded number of new ids (in turn per
topic), unknown ids are remembered in a bounded, expiring cache, and decoding on the event loop never asks
the registry (``schema_not_looked_up``)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from stream_app.domain.reasons import Reason
from stream_app.kafka import registry as registry_edge
from stream_app.kafka.registry import (
    BoundedCache,
    ConfluentSchemas,
    SchemaRegistryUnavailable,
    from_settings,
    lookup_plan,
)
from stream_app.settings import Settings
from stream_app.wire.codecs import DecodeError, decode_observation
from stream_app.wire.schema_check import check_schemas, collection_depth, zero_byte_items
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion

MAX_BYTES = 1 << 20
SCHEMAS_DIR = Settings.model_construct().schemas_dir
Make = Callable[..., dict[str, Any]]


def _record(*fields: tuple[str, Any], name: str = "ns.Thing") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


def _where(schema: Any) -> str | None:
    return zero_byte_items(parse_schema(schema, _write_hint=False))


# --- which schemas declare items of no bytes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        pytest.param({"type": "array", "items": "null"}, "$.items", id="array-of-null"),
        pytest.param({"type": "array", "items": {"type": "null"}}, "$.items", id="array-of-null-object"),
        pytest.param(
            _record(("xs", {"type": "array", "items": _record(name="ns.Empty")})),
            "$.fields.xs.items",
            id="array-of-empty-record",
        ),
        pytest.param(
            _record(("xs", {"type": "array", "items": _record(("a", "null"), ("b", "null"), name="ns.N")})),
            "$.fields.xs.items",
            id="array-of-record-of-nulls",
        ),
        pytest.param(
            _record(
                ("xs", {"type": "array", "items": _record(("e", _record(name="ns.E")), name="ns.Outer")})
            ),
            "$.fields.xs.items",
            id="array-of-record-of-empty-record",
        ),
        pytest.param(
            _record(("xs", {"type": "array", "items": {"type": "fixed", "name": "ns.F", "size": 0}})),
            "$.fields.xs.items",
            id="array-of-fixed-0",
        ),
        pytest.param(
            _record(("e", _record(name="ns.E")), ("xs", {"type": "array", "items": "ns.E"})),
            "$.fields.xs.items",
            id="array-of-a-named-empty-record-by-reference",
        ),
        pytest.param(
            _record(("u", ["null", {"type": "array", "items": "null"}])),
            "$.fields.u[1].items",
            id="in-a-union",
        ),
        pytest.param(
            _record(("m", {"type": "map", "values": {"type": "array", "items": "null"}})),
            "$.fields.m.values.items",
            id="in-a-map",
        ),
        pytest.param(
            {"type": "array", "items": {"type": "array", "items": "null"}}, "$.items.items", id="nested"
        ),
    ],
)
def test_arrays_whose_items_take_no_bytes_are_found(schema: Any, where: str) -> None:
    assert _where(schema) == where


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "array", "items": "int"}, id="ints"),
        pytest.param({"type": "array", "items": "boolean"}, id="booleans"),
        pytest.param({"type": "array", "items": ["null", "int"]}, id="union-with-null: its index is a byte"),
        pytest.param(
            {"type": "array", "items": {"type": "enum", "name": "ns.One", "symbols": ["A"]}}, id="enum-of-one"
        ),
        pytest.param({"type": "array", "items": {"type": "fixed", "name": "ns.F", "size": 1}}, id="fixed-1"),
        pytest.param({"type": "array", "items": {"type": "array", "items": "int"}}, id="arrays"),
        pytest.param({"type": "map", "values": "null"}, id="map-of-null: each key takes a byte"),
        pytest.param(
            {"type": "array", "items": {"type": "string", "logicalType": "uuid"}}, id="logical-type"
        ),
        pytest.param(
            _record(
                ("next", ["null", "ns.Node"]), ("xs", {"type": "array", "items": "ns.Node"}), name="ns.Node"
            ),
            id="recursive-record",
        ),
        pytest.param(_record(("a", "null")), id="no-array"),
    ],
)
def test_arrays_whose_items_take_bytes_are_allowed(schema: Any) -> None:
    assert _where(schema) is None


def test_every_local_schema_is_allowed(registry: SchemaRegistry) -> None:
    assert [v.file_name for v in registry.by_fingerprint.values() if zero_byte_items(v.parsed)] == []


def test_schemas_check_fails_a_local_version_with_items_of_no_bytes(tmp_path: Path) -> None:
    thing = _record(("a", "string"), ("xs", {"type": "array", "items": "null"}), name="Thing")
    (tmp_path / "thing.v1.avsc").write_text(json.dumps(thing), encoding="utf-8")
    report = check_schemas(tmp_path)
    [failure] = report.failures
    assert failure.what == "thing.v1.avsc"
    assert "$.fields.xs.items" in failure.detail
    assert "schema_not_allowed" in failure.detail


# --- the bounded cache ----------------------------------------------------------------------------------


def test_bounded_cache_keeps_at_most_its_size_the_oldest_going_first() -> None:
    cache: BoundedCache[int, str] = BoundedCache(3)
    for i in range(10):
        cache.put(i, f"v{i}")
        assert len(cache) <= 3
    assert [cache.get(i) for i in range(10)] == [None] * 7 + ["v7", "v8", "v9"]
    cache.put(7, "again")  # put again: last in line
    cache.put(10, "v10")
    assert (cache.get(7), cache.get(8), cache.get(10)) == ("again", None, "v10")


def test_bounded_cache_forgets_after_its_ttl_and_evicts_the_expired_first() -> None:
    now = [0.0]
    cache: BoundedCache[int, bool] = BoundedCache(3, ttl_s=30.0, clock=lambda: now[0])
    cache.put(1, True)
    now[0] = 20.0
    cache.put(2, True)
    cache.put(3, True)
    now[0] = 29.9
    assert cache.get(1)
    now[0] = 30.0
    assert cache.get(1) is None, "expired"
    cache.put(4, True)  # full: the expired one goes, not the live ones
    assert (cache.get(2), cache.get(3), cache.get(4)) == (True, True, True)
    now[0] = 100.0
    cache.put(5, True)
    assert len(cache) == 1, "every expired entry was dropped on the way"
    with pytest.raises(ValueError, match="max_size"):
        BoundedCache(0)


# --- what a batch looks up ----------------------------------------------------------------------------


def test_lookup_plan_takes_at_most_the_limit_in_turn_from_each_topic() -> None:
    flood = [("reporter.mae.observations", 1000 + i) for i in range(300)]
    sourced = [*flood[:5], ("reporter.mps.observations", 7), *flood[5:], ("reporter.moh.observations", 8)]
    plan = lookup_plan(sourced, lambda _i: False, 4)
    assert plan.ids == (1000, 7, 8, 1001)
    assert len(plan.skipped) == 300 - 2
    assert plan.skipped[:2] == (1002, 1003)


def test_lookup_plan_leaves_out_known_and_repeated_ids() -> None:
    sourced = [("a", 1), ("a", 2), ("b", 1), ("a", 2), ("b", 3), ("b", 4)]
    plan = lookup_plan(sourced, lambda i: i == 3, 10)
    assert plan.ids == (1, 4, 2), "in turn: a, b, a"
    assert plan.skipped == ()
    assert lookup_plan([], lambda _i: False, 1) == registry_edge.LookupPlan((), ())


# --- the resolver: lookups bounded, never on the event loop ---------------------------------------------


@dataclass
class FakeSchema:
    schema_str: str
    schema_type: str = "AVRO"
    references: list[Any] = field(default_factory=list)


class NotFoundError(Exception):
    http_status_code = 404
    error_code = 40403


@dataclass
class FakeClient:
    schemas: dict[int, FakeSchema]
    failure: Exception | None = None
    calls: list[int] = field(default_factory=list)

    def get_schema(self, schema_id: int) -> FakeSchema:
        self.calls.append(schema_id)
        if self.failure is not None:
            raise self.failure
        if schema_id not in self.schemas:
            raise NotFoundError(f"no schema {schema_id}")
        return self.schemas[schema_id]


def _frame(schema_id: int, schema: SchemaVersion | Any, record: Any) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, schema.parsed if isinstance(schema, SchemaVersion) else schema, record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def _v2(registry: SchemaRegistry) -> FakeSchema:
    return FakeSchema(registry.latest("observation").text)


def _on_loop(resolver: ConfluentSchemas, registry: SchemaRegistry, raw: bytes) -> dict[str, Any] | str:
    """Decode ``raw`` on a running event loop, as a worker's stage does: the record, or its reason."""

    async def decode() -> dict[str, Any] | str:
        try:
            return decode_observation(registry, raw, MAX_BYTES, resolver)
        except DecodeError as exc:
            return exc.reason

    return asyncio.run(decode())


def test_decoding_on_the_event_loop_never_asks_the_registry(
    registry: SchemaRegistry, make_record: Make
) -> None:
    client = FakeClient({5: _v2(registry)})
    resolver = ConfluentSchemas(client, registry)
    raw = _frame(5, registry.latest("observation"), make_record())
    assert _on_loop(resolver, registry, raw) == Reason.SCHEMA_NOT_LOOKED_UP
    assert client.calls == [], "no blocking call on the loop"
    asyncio.run(resolver.prefetch([raw]))
    decoded = _on_loop(resolver, registry, raw)
    assert isinstance(decoded, dict)
    assert decoded["value"] == 87.0
    assert client.calls == [5]
    # off the event loop (a command-line tool), a miss is looked up at once, as before
    client.schemas[6] = _v2(registry)
    assert decode_observation(
        registry, _frame(6, registry.latest("observation"), make_record()), MAX_BYTES, resolver
    )
    assert client.calls == [5, 6]


def test_a_flood_of_random_ids_costs_at_most_the_limit_and_another_topic_still_resolves(
    registry: SchemaRegistry, make_record: Make
) -> None:
    client = FakeClient({7: _v2(registry)})
    resolver = ConfluentSchemas(client, registry, max_lookups=10)
    v2 = registry.latest("observation")
    flood = [("reporter.mae.observations", _frame(100_000 + i, v2, make_record())) for i in range(300)]
    valid = ("reporter.mps.observations", _frame(7, v2, make_record(value=12.0)))
    batch = [*flood[:150], valid, *flood[150:]]
    asyncio.run(resolver.prefetch_from(batch))
    assert len(client.calls) == 10
    assert 7 in client.calls, "the other topic's new id took its turn"
    outcomes = [_on_loop(resolver, registry, value) for _, value in batch]
    assert outcomes.count(Reason.UNKNOWN_SCHEMA) == 9
    assert outcomes.count(Reason.SCHEMA_NOT_LOOKED_UP) == 291
    assert [o["value"] for o in outcomes if isinstance(o, dict)] == [12.0]
    # the same batch again (redelivered): the unknown ids are remembered, 10 more are asked
    asyncio.run(resolver.prefetch_from(batch))
    assert len(client.calls) == 20
    assert len(set(client.calls)) == 20


def test_unknown_ids_are_remembered_within_bounds(registry: SchemaRegistry, make_record: Make) -> None:
    now = [0.0]
    client = FakeClient({})
    resolver = ConfluentSchemas(
        client, registry, max_lookups=50, unknown_ids_max=100, unknown_id_recheck_s=30.0, clock=lambda: now[0]
    )
    v2 = registry.latest("observation")
    for batch in range(10):
        values = [_frame(batch * 50 + i, v2, make_record()) for i in range(50)]
        asyncio.run(resolver.prefetch(values))
        assert len(resolver._unknown) <= 100
    assert len(client.calls) == 500
    asyncio.run(resolver.prefetch([_frame(499, v2, make_record())]))
    assert len(client.calls) == 500, "a recent unknown id is not asked again"
    now[0] = 31.0
    asyncio.run(resolver.prefetch([_frame(499, v2, make_record())]))
    assert len(client.calls) == 501, "after its time it is: it may have been registered since"


def test_a_schema_with_items_of_no_bytes_is_refused_before_any_record_is_read(
    registry: SchemaRegistry, make_record: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = json.loads(registry.latest("observation").text)
    hostile["fields"].append({"name": "padding", "type": {"type": "array", "items": "null"}, "default": []})
    client = FakeClient({9: FakeSchema(json.dumps(hostile))})
    resolver = ConfluentSchemas(client, registry)
    # a body that declares 2**20 nulls in four bytes (kept small: were the check missing, it must not hurt)
    raw = _frame(
        9, parse_schema(hostile), make_record() | {"report_ref": None, "source_system": None, "padding": []}
    )
    raw = raw[:-1] + b"\x80\x80\x80\x01\x00"

    def never(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a record was read with the refused schema")

    monkeypatch.setattr("stream_app.wire.codecs.schemaless_reader", never)
    asyncio.run(resolver.prefetch([raw]))
    for _ in range(3):
        assert _on_loop(resolver, registry, raw) == Reason.SCHEMA_NOT_ALLOWED
    with pytest.raises(
        DecodeError, match=r"schema id 9 has array items that take no bytes at \$.fields.padding"
    ):
        resolver(9)
    assert client.calls == [9], "refused once, for good: ids are immutable"


def test_a_schema_the_checks_cannot_follow_is_refused_and_cached(
    registry: SchemaRegistry, make_record: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_deep(_schema: Any) -> str | None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(registry_edge, "zero_byte_items", too_deep)
    client = FakeClient({3: _v2(registry), 4: _v2(registry)})
    resolver = ConfluentSchemas(client, registry)
    v2 = registry.latest("observation")
    asyncio.run(resolver.prefetch([_frame(3, v2, make_record()), _frame(4, v2, make_record())]))
    assert client.calls == [3, 4], "one id that cannot be checked does not stop the others' lookups"
    assert _on_loop(resolver, registry, _frame(3, v2, make_record())) == Reason.SCHEMA_MISMATCH


def test_an_unreachable_registry_keeps_what_was_answered(registry: SchemaRegistry, make_record: Make) -> None:
    client = FakeClient({1: _v2(registry)})
    resolver = ConfluentSchemas(client, registry)
    v2 = registry.latest("observation")
    asyncio.run(resolver.prefetch([_frame(1, v2, make_record())]))
    client.failure = ConnectionError("down")
    with pytest.raises(SchemaRegistryUnavailable):
        asyncio.run(resolver.prefetch([_frame(1, v2, make_record()), _frame(2, v2, make_record())]))
    assert resolver.is_cached(1)
    assert not resolver.is_cached(2), "a failed lookup is not cached"


def test_the_lookup_limit_is_a_setting(registry: SchemaRegistry) -> None:
    settings = Settings(schema_registry_url="mock://limits", schema_registry_max_lookups_per_batch=5)
    resolver = from_settings(settings, registry)
    assert resolver is not None
    assert resolver.max_lookups == 5
    assert Settings().schema_registry_max_lookups_per_batch == registry_edge.MAX_LOOKUPS_PER_BATCH


def _nested(depth: int) -> dict[str, Any]:
    items: Any = "long"
    for _ in range(depth):
        items = {"type": "array", "items": items}
    return {"type": "record", "name": "Deep", "fields": [{"name": "values", "type": items}]}


def test_collection_depth_counts_arrays_and_maps_and_a_type_that_contains_itself_has_no_end() -> None:
    assert collection_depth(parse_schema(_nested(3))) == 3
    assert collection_depth(parse_schema({"type": "map", "values": _nested(2)})) == 3
    linked = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", {"type": "array", "items": "Node"}]}],
    }
    assert collection_depth(parse_schema(linked)) >= 1 << 30


def test_a_writer_schema_nesting_collections_deeper_than_allowed_is_refused_before_it_is_checked(
    registry: SchemaRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking compatibility samples ten items per array: eight levels would be 10**8 per sample."""
    hostile = json.loads(registry.latest("observation").text)
    hostile["fields"].append({"name": "deep", "type": _nested(8)["fields"][0]["type"], "default": []})

    def never(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the schema was sampled")

    monkeypatch.setattr(registry_edge, "compatibility_problem", never)
    client = FakeClient({12: FakeSchema(json.dumps(hostile))})
    resolver = ConfluentSchemas(client, registry)
    asyncio.run(resolver.prefetch([b"\x00" + (12).to_bytes(4, "big") + b"\x00"]))
    with pytest.raises(DecodeError, match="nests arrays and maps 8 deep") as refused:
        resolver(12)
    assert refused.value.reason == Reason.SCHEMA_NOT_ALLOWED


class BadRequestError(Exception):
    http_status_code = 422
    error_code = 42201


def test_a_registry_refusing_one_id_is_an_unknown_id_not_an_outage(registry: SchemaRegistry) -> None:
    """A 4xx about one id (400, 422): remembered as unknown, never waited for (a 401/403 or a 5xx is
    the registry's own trouble: the stage waits)."""
    client = FakeClient({}, failure=BadRequestError("bad id"))
    resolver = ConfluentSchemas(client, registry)
    asyncio.run(resolver.prefetch([b"\x00" + (77).to_bytes(4, "big") + b"\x00"]))
    assert resolver(77) is None, "unknown: its records are dead-lettered as unknown_schema"
    asyncio.run(resolver.prefetch([b"\x00" + (77).to_bytes(4, "big") + b"\x00"]))
    assert client.calls == [77], "and not asked again while it is remembered"
