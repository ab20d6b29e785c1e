"""stream_app.codecs: Avro single-object encoding, JSON intake, and the decode reason codes."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.codecs import SINGLE_OBJECT_MARKER, Reasons, decode, decode_observation, encode
from stream_app.exceptions import DecodeError
from stream_app.schemas import SchemaRegistry

MAX_BYTES = 1 << 20
REQUIRED = ["observation_id", "reporter", "indicator", "region", "value", "unit", "event_time", "report_time"]
Make = Callable[..., dict[str, Any]]


def _as_decoded(record: dict[str, Any]) -> dict[str, Any]:
    """What a record decodes to: timestamp-millis fields come back as aware UTC datetimes."""
    out = dict(record)
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


def _as_decoded_alert(alert: dict[str, Any]) -> dict[str, Any]:
    out = dict(alert)
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
    assert _reason(registry, raw) == Reasons.SCHEMA_MISMATCH


@pytest.mark.parametrize("field", REQUIRED)
def test_json_missing_required_field_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str
) -> None:
    doc = make_record()
    del doc[field]
    raw = json.dumps(doc).encode()
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reasons.SCHEMA_MISMATCH
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
    assert _reason(registry, raw) == Reasons.SCHEMA_MISMATCH


@pytest.mark.parametrize(
    ("field", "value"),
    [("revision", 1.5), ("revision", 2**31), ("value", True)],
)
def test_json_coercible_wrong_type_is_schema_mismatch(
    registry: SchemaRegistry, make_record: Make, field: str, value: Any
) -> None:
    raw = json.dumps(make_record(**{field: value})).encode()
    assert _reason(registry, raw) == Reasons.SCHEMA_MISMATCH


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
    assert _reason(registry, raw) == Reasons.UNDECODABLE


# --- framing and reason codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"hello world", b"\xff" * 64, b"[1, 2, 3]", b"\xc3", b"\xc3\x01", b"\xc3\x01\x00\x00", b"\x00\x01"],
)
def test_garbage_is_undecodable(registry: SchemaRegistry, raw: bytes) -> None:
    assert _reason(registry, raw) == Reasons.UNDECODABLE


def test_unknown_fingerprint_is_unknown_schema(registry: SchemaRegistry, make_record: Make) -> None:
    rng = random.Random(20241101)
    valid = encode(registry.latest("observation"), make_record())
    for _ in range(20):
        fingerprint = rng.randbytes(8)
        if int.from_bytes(fingerprint, "little") in registry.by_fingerprint:
            continue
        assert _reason(registry, SINGLE_OBJECT_MARKER + fingerprint + valid[10:]) == Reasons.UNKNOWN_SCHEMA


@pytest.mark.parametrize("schema_id", [0, 1, 42, 2**31 - 1])
def test_confluent_framed_record_is_unknown_schema(
    registry: SchemaRegistry, make_record: Make, schema_id: int
) -> None:
    body = encode(registry.latest("observation"), make_record())[10:]
    raw = b"\x00" + schema_id.to_bytes(4, "big") + body
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reasons.UNKNOWN_SCHEMA
    assert f"schema id {schema_id}" in info.value.message


def test_record_of_another_subject_is_schema_mismatch(registry: SchemaRegistry, t0_ms: int) -> None:
    raw = encode(registry.latest("alert"), _alert(t0_ms))
    with pytest.raises(DecodeError) as info:
        decode_observation(registry, raw, MAX_BYTES)
    assert info.value.reason == Reasons.SCHEMA_MISMATCH
    assert "alert" in info.value.message


def test_truncated_avro_body_is_undecodable(registry: SchemaRegistry, make_record: Make) -> None:
    raw = encode(registry.latest("observation"), make_record(period="2024-11", breakdowns={"k": "v"}))
    # Every cut, down to the empty body, leaves the reader short of bytes.
    for cut in range(10, len(raw)):
        assert _reason(registry, raw[:cut]) == Reasons.UNDECODABLE, f"cut at {cut}"


def test_oversized_record_is_rejected_before_decoding(registry: SchemaRegistry, make_record: Make) -> None:
    raw = encode(registry.latest("observation"), make_record())
    assert decode_observation(registry, raw, len(raw))["value"] == make_record()["value"]
    assert _reason(registry, raw, len(raw) - 1) == Reasons.OVERSIZED
    assert _reason(registry, b"x" * 101, 100) == Reasons.OVERSIZED


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
    assert _reason(registry, raw, 10 * MAX_BYTES) == Reasons.UNDECODABLE


def test_two_megabyte_string_field(registry: SchemaRegistry, make_record: Make) -> None:
    huge = "x" * (2 * 1024 * 1024)
    raw = json.dumps(make_record(observation_id=huge)).encode()
    assert decode_observation(registry, raw, 4 * MAX_BYTES)["observation_id"] == huge
    assert _reason(registry, raw, 2 * MAX_BYTES) == Reasons.OVERSIZED
    iso = json.dumps(make_record(event_time="2024-11-01T00:00:00" + "9" * (2 * 1024 * 1024))).encode()
    assert _reason(registry, iso, 4 * MAX_BYTES) == Reasons.SCHEMA_MISMATCH


def _decodes_or_decode_error(registry: SchemaRegistry, raw: bytes) -> str:
    """Anything but a dict or a DecodeError (with a known reason) propagates and fails the test."""
    try:
        decoded = decode_observation(registry, raw, MAX_BYTES)
    except DecodeError as exc:
        outcome = exc.reason
    else:
        assert isinstance(decoded, dict)
        outcome = "ok"
    assert outcome in {"ok", Reasons.UNDECODABLE, Reasons.UNKNOWN_SCHEMA, Reasons.SCHEMA_MISMATCH}
    return outcome


def test_random_junk_decodes_or_raises_decode_error(registry: SchemaRegistry) -> None:
    rng = random.Random(0xC3_01)
    outcomes = {_decodes_or_decode_error(registry, rng.randbytes(rng.randrange(0, 300))) for _ in range(500)}
    assert Reasons.UNDECODABLE in outcomes


def test_random_body_after_a_valid_header_decodes_or_raises_decode_error(registry: SchemaRegistry) -> None:
    rng = random.Random(1101)
    header = SINGLE_OBJECT_MARKER + registry.latest("observation").fingerprint_bytes
    outcomes = {
        _decodes_or_decode_error(registry, header + rng.randbytes(rng.randrange(0, 300))) for _ in range(500)
    }
    assert Reasons.UNDECODABLE in outcomes


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
    assert outcomes >= {"ok", Reasons.UNDECODABLE}


def test_huge_length_prefix_is_undecodable(registry: SchemaRegistry) -> None:
    header = SINGLE_OBJECT_MARKER + registry.latest("observation").fingerprint_bytes
    # zig-zag varint of 2**62: a string length no record could hold
    huge = (2**62) << 1
    varint = bytearray()
    while huge > 0x7F:
        varint.append((huge & 0x7F) | 0x80)
        huge >>= 7
    varint.append(huge)
    assert _reason(registry, header + bytes(varint) + b"abc") == Reasons.UNDECODABLE
