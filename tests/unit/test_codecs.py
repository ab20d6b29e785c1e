"""stream_app.wire.codecs: Avro single-object encoding, JSON intake, and the decode reason codes."""

from __future__ import annotations

import asyncio
import io
import json
import math
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from stream_app.domain.reasons import Reason
from stream_app.exceptions import ConfigurationError
from stream_app.kafka.registry import ConfluentSchemas, SchemaRegistryUnavailable, connect, from_settings
from stream_app.settings import Settings
from stream_app.wire.codecs import (
    SINGLE_OBJECT_MARKER,
    DecodeError,
    decode,
    decode_any,
    decode_observation,
    encode,
)
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion

MAX_BYTES = 1 << 20
SCHEMAS_DIR = Settings.model_construct().schemas_dir
REQUIRED = ["observation_id", "reporter", "indicator", "region", "value", "unit", "event_time", "report_time"]
Make = Callable[..., dict[str, Any]]
V2_DEFAULTS = {"report_ref": None, "source_system": None}


def _as_decoded(record: dict[str, Any]) -> dict[str, Any]:
    """What a record decodes to: timestamp-millis fields come back as aware UTC datetimes, and the
    fields the reader (observation v2) has beyond the record's take their defaults."""
    out = {**V2_DEFAULTS, **record}
    for name in ("event_time", "report_time"):
        out[name] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=record[name])
    return out


def _reason(registry: SchemaRegistry, raw: bytes, max_bytes: int = MAX_BYTES) -> str:
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, max_bytes)
    assert info.value.message, "a DecodeError must explain itself"
    return info.value.reason


def _alert(t0_ms: int) -> dict[str, Any]:
    return {
        "alert_id": "alr-1",
        "alert_key": "levels:ENV.AQI|01|HN-AQ-HOANKIEM",
        "rule": "levels:ENV.AQI",
        "transition": "FIRING",
        "indicator": "ENV.AQI",
        "reporter": "MAE",
        "region": "01",
        "station": "HN-AQ-HOANKIEM",
        "value": 160.0,
        "threshold": 151.0,
        "level": 3,
        "previous_level": 1,
        "level_code": "BAD",
        "level_name_vi": "Xấu",
        "level_name_en": "bad",
        "colour": "#FF0000",
        "observation_id": "obs-1",
        "event_time": t0_ms,
        "processing_time": t0_ms + 1000,
    }


# --- round trips -------------------------------------------------------------------------------


def test_encoding_starts_with_marker_and_fingerprint(registry: SchemaRegistry, make_record: Make) -> None:
    schema = registry.latest("observation")
    raw = encode(schema, make_record())
    assert raw[:2] == SINGLE_OBJECT_MARKER == b"\xc3\x01"
    assert raw[2:10] == schema.fingerprint_bytes


def test_observation_round_trip(registry: SchemaRegistry, make_record: Make) -> None:
    record = make_record(
        station=None,
        value=-0.125,
        quality="PROVISIONAL",
        period="2024-11",
        breakdowns={"source": "hydro", "tỉnh": "Hà Nội"},
    )
    raw = encode(registry.latest("observation"), record)
    assert decode_observation(registry, raw, MAX_BYTES) == _as_decoded(record)


def test_defaults_are_filled(registry: SchemaRegistry, make_record: Make) -> None:
    record = make_record()
    for optional in ("revision", "station", "quality", "period", "breakdowns"):
        del record[optional]
    decoded = decode_observation(registry, encode(registry.latest("observation"), record), MAX_BYTES)
    assert decoded["revision"] == 0
    assert decoded["station"] is None
    assert decoded["quality"] == "FINAL"
    assert decoded["period"] is None
    assert decoded["breakdowns"] == {}


def test_alert_round_trip(registry: SchemaRegistry, t0_ms: int) -> None:
    alert = _alert(t0_ms)
    decoded = decode(registry, "alert", encode(registry.latest("alert"), alert))
    assert decoded == _as_decoded_alert(alert)


ALERT_V2_DEFAULTS: dict[str, Any] = {
    "rule_kind": "levels",
    "domain": "",
    "event_type": "TRANSITION",
    "cause_observation_ids": [],
    "detail": "",
    "acknowledged_by": None,
    "acknowledged_at": None,
    "assigned_to": None,
    "comment": None,
    "directive_id": None,
}


def _as_decoded_alert(alert: dict[str, Any]) -> dict[str, Any]:
    out = {**ALERT_V2_DEFAULTS, **alert}  # fields added in alert v2 take their defaults
    for name in ("event_time", "processing_time"):
        out[name] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=alert[name])
    return out


# --- JSON intake -------------------------------------------------------------------------------


def test_json_with_millis_decodes_like_avro(registry: SchemaRegistry, make_record: Make) -> None:
    record = make_record(breakdowns={"source": "hydro"})
    from_avro = decode_observation(registry, encode(registry.latest("observation"), record), MAX_BYTES)
    from_json = decode_observation(registry, json.dumps(record).encode(), MAX_BYTES)
    assert from_json == from_avro


@pytest.mark.parametrize(
    ("event_iso", "report_iso"),
    [
        ("2024-11-01T00:00:00+00:00", "2024-11-01T00:01:00+00:00"),
        ("2024-11-01T07:00:00+07:00", "2024-11-01T07:01:00+07:00"),
        ("2024-11-01T00:00:00Z", "2024-11-01T00:01:00.000Z"),
        ("2024-10-31T19:00:00-05:00", "2024-10-31T19:01:00-05:00"),
    ],
)
def test_json_with_iso_offsets_decodes_like_avro(
    registry: SchemaRegistry, make_record: Make, t0_ms: int, event_iso: str, report_iso: str
) -> None:
    record = make_record()
    assert (record["event_time"], record["report_time"]) == (t0_ms, t0_ms + 60_000)
    from_avro = decode_observation(registry, encode(registry.latest("observation"), record), MAX_BYTES)
    doc = dict(record, event_time=event_iso, report_time=report_iso)
    assert decode_observation(registry, json.dumps(doc).encode(), MAX_BYTES) == from_avro


def test_json_with_leading_whitespace_is_accepted(registry: SchemaRegistry, make_record: Make) -> None:
    raw = b" \n\t" + json.dumps(make_record()).encode()
    assert decode_observation(registry, raw, MAX_BYTES)["observation_id"] == make_record()["observation_id"]


def test_json_keeps_millisecond_precision(registry: SchemaRegistry, make_record: Make, t0_ms: int) -> None:
    doc = make_record(event_time="2024-11-01T07:00:00.123+07:00")
    decoded = decode_observation(registry, json.dumps(doc).encode(), MAX_BYTES)
    expected = datetime(2024, 11, 1, 0, 0, 0, 123_000, tzinfo=UTC)
    assert decoded["event_time"] == expected
    assert decoded["event_time"].utcoffset() == timedelta(0)


@pytest.mark.parametrize("field", ["event_time", "report_time"])
@pytest.mark.parametrize("text", ["2024-11-01T00:00:00", "2024-11-01", "yesterday", ""])
def test_json_time_without_offset_or_unparseable_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str, text: str
) -> None:
    raw = json.dumps(make_record(**{field: text})).encode()
    assert _reason(registry, raw) == Reason.SCHEMA_MISMATCH


@pytest.mark.parametrize("field", REQUIRED)
def test_json_missing_required_field_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str
) -> None:
    doc = make_record()
    del doc[field]
    raw = json.dumps(doc).encode()
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reason.SCHEMA_MISMATCH
    assert field in info.value.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("value", "eighty"),
        ("value", None),
        ("station", 5),
        ("quality", "GUESS"),
        ("breakdowns", ["a"]),
        ("breakdowns", {"source": 1}),
        ("period", []),
        ("revision", 2**70),
        ("observation_id", "\ud800"),  # a lone surrogate: valid JSON, not encodable as UTF-8
    ],
)
def test_json_of_wrong_type_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str, value: Any
) -> None:
    raw = json.dumps(make_record(**{field: value})).encode()
    assert _reason(registry, raw) == Reason.SCHEMA_MISMATCH


@pytest.mark.parametrize(
    ("field", "value"),
    [("revision", 1.5), ("revision", 2**31), ("value", True)],
)
def test_json_coercible_wrong_type_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str, value: Any
) -> None:
    raw = json.dumps(make_record(**{field: value})).encode()
    assert _reason(registry, raw) == Reason.SCHEMA_MISMATCH


@pytest.mark.parametrize(
    ("literal", "check"),
    [
        ("NaN", math.isnan),
        ("Infinity", lambda v: v == math.inf),
        ("-Infinity", lambda v: v == -math.inf),
    ],
)
def test_json_non_finite_constants_reach_validation(
    registry: SchemaRegistry, make_record: Make, literal: str, check: Callable[[float], bool]
) -> None:
    raw = json.dumps(make_record(value=1.5)).replace('"value": 1.5', f'"value": {literal}').encode()
    assert literal.encode() in raw
    assert check(decode_observation(registry, raw, MAX_BYTES)["value"])


@pytest.mark.parametrize("raw", [b'{"a": 1', b"{'single': 'quotes'}", b"{\xff\xfe}", b"{}}"])
def test_invalid_json_is_undecodable(registry: SchemaRegistry, raw: bytes) -> None:
    assert _reason(registry, raw) == Reason.UNDECODABLE


# --- framing and reason codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"hello world", b"\xff" * 64, b"[1, 2, 3]", b"\xc3", b"\xc3\x01", b"\xc3\x01\x00\x00", b"\x00\x01"],
)
def test_garbage_is_undecodable(registry: SchemaRegistry, raw: bytes) -> None:
    assert _reason(registry, raw) == Reason.UNDECODABLE


def test_unknown_fingerprint_is_unknown_schema(registry: SchemaRegistry, make_record: Make) -> None:
    rng = random.Random(20241101)
    valid = encode(registry.latest("observation"), make_record())
    for _ in range(20):
        fingerprint = rng.randbytes(8)
        if int.from_bytes(fingerprint, "little") in registry.by_fingerprint:
            continue
        assert _reason(registry, SINGLE_OBJECT_MARKER + fingerprint + valid[10:]) == Reason.UNKNOWN_SCHEMA


@pytest.mark.parametrize("schema_id", [0, 1, 42, 2**31 - 1])
def test_confluent_framed_record_is_unknown_schema(
    registry: SchemaRegistry, make_record: Make, schema_id: int
) -> None:
    body = encode(registry.latest("observation"), make_record())[10:]
    raw = b"\x00" + schema_id.to_bytes(4, "big") + body
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reason.UNKNOWN_SCHEMA
    assert f"schema id {schema_id}" in info.value.message


def test_record_of_another_subject_is_schema_mismatch(registry: SchemaRegistry, t0_ms: int) -> None:
    raw = encode(registry.latest("alert"), _alert(t0_ms))
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reason.SCHEMA_MISMATCH
    assert "alert" in info.value.message


def test_truncated_avro_body_is_undecodable(registry: SchemaRegistry, make_record: Make) -> None:
    raw = encode(registry.latest("observation"), make_record(period="2024-11", breakdowns={"k": "v"}))
    # Every cut, down to the empty body, leaves the reader short of bytes.
    for cut in range(10, len(raw)):
        assert _reason(registry, raw[:cut]) == Reason.UNDECODABLE, f"cut at {cut}"


def test_oversized_record_is_rejected_before_decoding(registry: SchemaRegistry, make_record: Make) -> None:
    raw = encode(registry.latest("observation"), make_record())
    assert decode_observation(registry, raw, len(raw))["value"] == make_record()["value"]
    assert _reason(registry, raw, len(raw) - 1) == Reason.OVERSIZED
    assert _reason(registry, b"x" * 101, 100) == Reason.OVERSIZED


# --- hostile inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", id="deep-arrays"),
        pytest.param(b'{"a":' + b"[" * 200_000, id="deep-arrays-unclosed"),
        pytest.param(b"{" + b'"a":{' * 100_000 + b"}" * 100_001, id="deep-objects"),
    ],
)
def test_deeply_nested_json_is_undecodable_not_a_crash(registry: SchemaRegistry, raw: bytes) -> None:
    assert _reason(registry, raw, 10 * MAX_BYTES) == Reason.UNDECODABLE


def test_two_megabyte_string_field(registry: SchemaRegistry, make_record: Make) -> None:
    huge = "x" * (2 * 1024 * 1024)
    raw = json.dumps(make_record(observation_id=huge)).encode()
    assert decode_observation(registry, raw, 4 * MAX_BYTES)["observation_id"] == huge
    assert _reason(registry, raw, 2 * MAX_BYTES) == Reason.OVERSIZED
    iso = json.dumps(make_record(event_time="2024-11-01T00:00:00" + "9" * (2 * 1024 * 1024))).encode()
    assert _reason(registry, iso, 4 * MAX_BYTES) == Reason.SCHEMA_MISMATCH


def _decodes_or_decode_error(registry: SchemaRegistry, raw: bytes) -> str:
    """Anything but a dict or a DecodeError (with a known reason) propagates and fails the test."""
    try:
        decoded = decode_observation(registry, raw, MAX_BYTES)
    except DecodeError as exc:
        outcome: str = exc.reason
    else:
        assert isinstance(decoded, dict)
        outcome = "ok"
    assert outcome in {"ok", Reason.UNDECODABLE, Reason.UNKNOWN_SCHEMA, Reason.SCHEMA_MISMATCH}
    return outcome


def test_random_junk_decodes_or_raises_decode_error(registry: SchemaRegistry) -> None:
    rng = random.Random(0xC3_01)
    outcomes = {_decodes_or_decode_error(registry, rng.randbytes(rng.randrange(0, 300))) for _ in range(500)}
    assert Reason.UNDECODABLE in outcomes


def test_random_body_after_a_valid_header_decodes_or_raises_decode_error(registry: SchemaRegistry) -> None:
    rng = random.Random(1101)
    header = SINGLE_OBJECT_MARKER + registry.latest("observation").fingerprint_bytes
    outcomes = {
        _decodes_or_decode_error(registry, header + rng.randbytes(rng.randrange(0, 300))) for _ in range(500)
    }
    assert Reason.UNDECODABLE in outcomes


def test_mutated_valid_records_decode_or_raise_decode_error(
    registry: SchemaRegistry, make_record: Make
) -> None:
    rng = random.Random(79)
    valid = bytearray(encode(registry.latest("observation"), make_record(breakdowns={"k": "v"})))
    outcomes = set()
    for _ in range(500):
        mutated = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            mutated[rng.randrange(10, len(mutated))] = rng.randrange(256)
        outcomes.add(_decodes_or_decode_error(registry, bytes(mutated)))
    assert outcomes >= {"ok", Reason.UNDECODABLE}


def test_huge_length_prefix_is_undecodable(registry: SchemaRegistry) -> None:
    header = SINGLE_OBJECT_MARKER + registry.latest("observation").fingerprint_bytes
    # zig-zag varint of 2**62: a string length no record could hold
    huge = (2**62) << 1
    varint = bytearray()
    while huge > 0x7F:
        varint.append((huge & 0x7F) | 0x80)
        huge >>= 7
    varint.append(huge)
    assert _reason(registry, header + bytes(varint) + b"abc") == Reason.UNDECODABLE


# --- schema versions: v1 writers, v2 reader ----------------------------------------------------


def test_v1_record_decodes_under_the_v2_reader(registry: SchemaRegistry, make_record: Make) -> None:
    v1 = registry.version("observation", 1)
    assert registry.latest("observation").version == 2
    record = make_record(quality="TEST", period="2024-11", breakdowns={"source": "trạm"})
    decoded = decode_observation(registry, encode(v1, record), MAX_BYTES)
    assert decoded == _as_decoded(record)
    assert decoded["report_ref"] is None
    assert decoded["source_system"] is None


def test_v2_record_keeps_its_new_fields(registry: SchemaRegistry, make_record: Make) -> None:
    record = make_record() | {"report_ref": "125/BC-BNNMT", "source_system": "AQMS Hà Nội"}
    raw = encode(registry.latest("observation"), record)
    assert decode_observation(registry, raw, MAX_BYTES) == _as_decoded(record)


def test_json_may_carry_the_v2_fields(registry: SchemaRegistry, make_record: Make) -> None:
    doc = make_record() | {"report_ref": "125/BC-BNNMT"}
    decoded = decode_observation(registry, json.dumps(doc).encode(), MAX_BYTES)
    assert (decoded["report_ref"], decoded["source_system"]) == ("125/BC-BNNMT", None)
    assert _reason(registry, json.dumps(doc | {"report_ref": 125}).encode()) == Reason.SCHEMA_MISMATCH


# --- Confluent framing through a schema registry -----------------------------------------------


def _frame(schema_id: int, schema: SchemaVersion | Any, record: dict[str, Any]) -> bytes:
    """Confluent framing: magic 0, the schema id big-endian, then the Avro body."""
    body = io.BytesIO()
    schemaless_writer(body, schema.parsed if isinstance(schema, SchemaVersion) else schema, record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def _avsc(name: str) -> str:
    return (SCHEMAS_DIR / name).read_text(encoding="utf-8")


@dataclass
class Confluent:
    resolver: ConfluentSchemas
    ids: dict[str, int]

    def register(self, subject: str, text: str, schema_type: str = "AVRO") -> int:
        return int(self.resolver.client.register_schema(subject, Schema(text, schema_type)))  # type: ignore[attr-defined]


@pytest.fixture
def confluent(registry: SchemaRegistry) -> Confluent:
    """An in-process (mock://) registry holding observation v1 and v2 and the alert schema."""
    resolver = connect(f"mock://test-{uuid.uuid4().hex}", registry)
    out = Confluent(resolver, {})
    for name, subject in [
        ("observation.v1.avsc", "reporter.mae.observations-value"),
        ("observation.v2.avsc", "reporter.mae.observations-value"),
        ("alert.v1.avsc", "center.alerts-value"),
    ]:
        out.ids[name] = out.register(subject, _avsc(name))
    assert len(set(out.ids.values())) == 3
    return out


def _confluent_reason(registry: SchemaRegistry, resolver: Any, raw: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES, resolver)
    assert info.value.message
    return info.value


@pytest.mark.parametrize("version", [1, 2])
def test_confluent_framed_record_decodes_through_the_registry(
    registry: SchemaRegistry, make_record: Make, confluent: Confluent, version: int
) -> None:
    writer = registry.version("observation", version)
    record = make_record(breakdowns={"nguồn": "trạm"})
    if version == 2:
        record |= {"report_ref": "125/BC-BNNMT", "source_system": None}
    raw = _frame(confluent.ids[f"observation.v{version}.avsc"], writer, record)
    decoded = decode_observation(registry, raw, MAX_BYTES, confluent.resolver)
    assert decoded == _as_decoded(record)
    assert decoded == decode_observation(registry, encode(writer, record), MAX_BYTES)
    assert confluent.resolver(confluent.ids[f"observation.v{version}.avsc"]) is writer


def test_confluent_unknown_id_is_unknown_schema(
    registry: SchemaRegistry, make_record: Make, confluent: Confluent
) -> None:
    raw = _frame(4242, registry.latest("observation"), make_record())
    error = _confluent_reason(registry, confluent.resolver, raw)
    assert error.reason == Reason.UNKNOWN_SCHEMA
    assert "schema id 4242 is not in the registry" in error.message


def test_confluent_record_of_another_subject_is_schema_mismatch(
    registry: SchemaRegistry, confluent: Confluent, t0_ms: int
) -> None:
    raw = _frame(confluent.ids["alert.v1.avsc"], registry.latest("alert"), _alert(t0_ms))
    error = _confluent_reason(registry, confluent.resolver, raw)
    assert error.reason == Reason.SCHEMA_MISMATCH
    assert "alert" in error.message


def test_confluent_non_avro_schema_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, confluent: Confluent
) -> None:
    schema_id = confluent.register("json-value", '{"type": "object"}', "JSON")
    error = _confluent_reason(
        registry, confluent.resolver, _frame(schema_id, registry.latest("observation"), make_record())
    )
    assert error.reason == Reason.SCHEMA_MISMATCH
    assert "JSON schema, not Avro" in error.message


def _observation_schema(*extra: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(_avsc("observation.v2.avsc"))
    raw["fields"] = [f for f in raw["fields"] if f["name"] not in drop] + list(extra)
    return raw


def test_confluent_schema_we_do_not_have_but_can_read_is_accepted(
    registry: SchemaRegistry, make_record: Make, confluent: Confluent
) -> None:
    # A producer's own flavour: one more optional field, which the reader skips.
    theirs = _observation_schema({"name": "operator", "type": ["null", "string"], "default": None})
    schema_id = confluent.register("reporter.mae.observations-value", json.dumps(theirs))
    record = make_record() | {"report_ref": None, "source_system": None, "operator": "ca trực 2"}
    decoded = decode_observation(
        registry, _frame(schema_id, parse_schema(theirs), record), MAX_BYTES, confluent.resolver
    )
    assert decoded == _as_decoded(make_record())
    writer = confluent.resolver(schema_id)
    assert writer is not None
    assert (writer.subject, writer.version) == ("observation", 0)


@pytest.mark.parametrize(
    "theirs",
    [
        pytest.param(_observation_schema(drop=("unit",)), id="missing-required-field"),
        pytest.param(
            _observation_schema({"name": "value", "type": "string"}, drop=("value",)), id="value-as-string"
        ),
        pytest.param(
            {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "int"}]}, id="unknown-type"
        ),
        pytest.param(
            {"type": "record", "name": "Thing", "fields": [{"name": "a", "type": "nope"}]}, id="invalid"
        ),
    ],
)
def test_confluent_schema_the_reader_cannot_resolve_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, theirs: dict[str, Any]
) -> None:
    client = FakeClient({7: FakeSchema(json.dumps(theirs))})
    resolver = ConfluentSchemas(client, registry)
    raw = b"\x00\x00\x00\x00\x07" + b"\x00" * 40
    error = _confluent_reason(registry, resolver, raw)
    assert error.reason == Reason.SCHEMA_MISMATCH
    assert "schema id 7" in error.message
    _confluent_reason(registry, resolver, raw)
    assert client.calls == [7], "a mismatch is cached like any resolved id"


# --- the registry edge: caching and failures ---------------------------------------------------


@dataclass
class FakeSchema:
    schema_str: str
    schema_type: str = "AVRO"
    references: list[Any] = field(default_factory=list)


class FakeRegistryError(Exception):
    def __init__(self, http_status_code: int, error_code: int) -> None:
        super().__init__(f"HTTP {http_status_code}, SR code {error_code}")
        self.http_status_code = http_status_code
        self.error_code = error_code


@dataclass
class FakeClient:
    """Answers from ``schemas``; raises ``failure`` while it is set; counts the requests."""

    schemas: dict[int, FakeSchema]
    failure: Exception | None = None
    calls: list[int] = field(default_factory=list)

    def get_schema(self, schema_id: int) -> FakeSchema:
        self.calls.append(schema_id)
        if self.failure is not None:
            raise self.failure
        if schema_id not in self.schemas:
            raise FakeRegistryError(404, 40403)
        return self.schemas[schema_id]


def test_ids_are_asked_once_and_cached_forever(registry: SchemaRegistry, make_record: Make) -> None:
    client = FakeClient({1: FakeSchema(_avsc("observation.v1.avsc")), 2: FakeSchema(_avsc("alert.v1.avsc"))})
    resolver = ConfluentSchemas(client, registry)
    v1 = registry.version("observation", 1)
    for i in range(50):
        assert (
            decode_observation(registry, _frame(1, v1, make_record(value=float(i))), MAX_BYTES, resolver)[
                "value"
            ]
            == i
        )
        _confluent_reason(registry, resolver, _frame(2, v1, make_record()))
    assert client.calls == [1, 2]
    client.failure = ConnectionError("registry down")
    assert decode_observation(registry, _frame(1, v1, make_record()), MAX_BYTES, resolver)["value"] == 87.0


def test_unknown_ids_are_asked_again_after_a_while(registry: SchemaRegistry, make_record: Make) -> None:
    now = [1000.0]
    client = FakeClient({})
    resolver = ConfluentSchemas(client, registry, unknown_id_recheck_s=30.0, clock=lambda: now[0])
    raw = _frame(5, registry.latest("observation"), make_record())
    for _ in range(3):
        assert _confluent_reason(registry, resolver, raw).reason == Reason.UNKNOWN_SCHEMA
    assert client.calls == [5]
    client.schemas[5] = FakeSchema(_avsc("observation.v2.avsc"))  # registered meanwhile
    now[0] += 31.0
    assert decode_observation(registry, raw, MAX_BYTES, resolver)["value"] == 87.0
    assert client.calls == [5, 5]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(ConnectionError("connection refused"), id="network"),
        pytest.param(TimeoutError("read timeout"), id="timeout"),
        pytest.param(FakeRegistryError(503, 50003), id="http-503"),
        pytest.param(FakeRegistryError(401, 40101), id="http-401"),
        pytest.param(FakeRegistryError(404, -1), id="404-not-from-a-registry"),
    ],
)
def test_unreachable_registry_raises_unavailable_not_a_decode_error(
    registry: SchemaRegistry, make_record: Make, failure: Exception
) -> None:
    client = FakeClient({9: FakeSchema(_avsc("observation.v2.avsc"))}, failure=failure)
    resolver = ConfluentSchemas(client, registry)
    raw = _frame(9, registry.latest("observation"), make_record())
    for _ in range(2):
        with pytest.raises(SchemaRegistryUnavailable, match="schema id 9") as info:
            decode_observation(registry, raw, MAX_BYTES, resolver)
        assert not isinstance(info.value, DecodeError)
    assert client.calls == [9, 9], "a failed lookup is not cached"
    client.failure = None
    assert decode_observation(registry, raw, MAX_BYTES, resolver)["value"] == 87.0


def test_real_client_against_a_closed_port_is_unavailable(
    registry: SchemaRegistry, make_record: Make
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    resolver = connect(f"http://user:secret@127.0.0.1:{port}", registry, **{"max.retries": 0, "timeout": 2})
    assert resolver.name == f"http://user:***@127.0.0.1:{port}"
    with pytest.raises(SchemaRegistryUnavailable) as info:
        decode_observation(
            registry, _frame(3, registry.latest("observation"), make_record()), MAX_BYTES, resolver
        )
    assert "secret" not in str(info.value)


def test_prefetch_resolves_new_ids_off_the_event_loop(registry: SchemaRegistry, make_record: Make) -> None:
    client = FakeClient({1: FakeSchema(_avsc("observation.v1.avsc")), 2: FakeSchema(_avsc("alert.v1.avsc"))})
    resolver = ConfluentSchemas(client, registry)
    v1 = registry.version("observation", 1)
    values = [_frame(1, v1, make_record()), _frame(2, v1, make_record()), _frame(3, v1, make_record()), b"{}"]
    asyncio.run(resolver.prefetch(values * 3))
    assert sorted(client.calls) == [1, 2, 3]
    assert all(resolver.is_cached(i) for i in (1, 2, 3))
    client.failure = ConnectionError("down")
    with pytest.raises(SchemaRegistryUnavailable):
        asyncio.run(resolver.prefetch([_frame(4, v1, make_record())]))


def test_no_registry_configured_gives_no_resolver(registry: SchemaRegistry) -> None:
    assert from_settings(Settings(schema_registry_url=None), registry) is None
    assert from_settings(Settings(schema_registry_url="  "), registry) is None
    assert isinstance(
        from_settings(Settings(schema_registry_url="mock://configured"), registry), ConfluentSchemas
    )
    with pytest.raises(ConfigurationError, match="registry"):
        connect("ftp://registry.example", registry)


def test_random_bodies_after_a_registered_confluent_header_decode_or_raise_decode_error(
    registry: SchemaRegistry, confluent: Confluent
) -> None:
    rng = random.Random(0x00_0C)
    outcomes = set()
    for name in ("observation.v1.avsc", "observation.v2.avsc", "alert.v1.avsc"):
        header = b"\x00" + confluent.ids[name].to_bytes(4, "big")
        for _ in range(200):
            raw = header + rng.randbytes(rng.randrange(0, 200))
            try:
                assert isinstance(decode_observation(registry, raw, MAX_BYTES, confluent.resolver), dict)
                outcomes.add("ok")
            except DecodeError as exc:
                outcomes.add(exc.reason)
    assert outcomes <= {"ok", Reason.UNDECODABLE, Reason.SCHEMA_MISMATCH}
    assert {Reason.UNDECODABLE, Reason.SCHEMA_MISMATCH} <= outcomes


def test_resolver_is_any_callable_and_a_per_record_resolution_failure_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make
) -> None:
    # A writer whose value may be a string: records holding a double resolve, a string does not.
    theirs = _observation_schema({"name": "value", "type": ["double", "string"]}, drop=("value",))
    writer = SchemaVersion("observation", 0, parse_schema(theirs), "", 0)
    resolver: Callable[[int], SchemaVersion | None] = {11: writer}.get
    ok = _frame(11, writer, make_record(value=12.5))
    assert decode_observation(registry, ok, MAX_BYTES, resolver)["value"] == 12.5
    error = _confluent_reason(registry, resolver, _frame(11, writer, make_record(value="mười hai")))
    assert error.reason == Reason.SCHEMA_MISMATCH
    assert "observation.v2.avsc" in error.message


def test_decode_any_names_the_subject_of_each_record(registry: SchemaRegistry) -> None:
    tick = encode(registry.latest("tick"), {"partition": 3, "now": 1_700_000_000_000, "source": "test"})
    subject, record = decode_any(registry, tick)
    assert subject == "tick"
    assert record["partition"] == 3
    with pytest.raises(DecodeError) as info:
        decode_any(registry, b"\xc3\x01" + bytes(8))
    assert info.value.reason == "unknown_schema"
