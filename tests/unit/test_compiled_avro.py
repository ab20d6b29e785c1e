"""The compiled Avro codecs agree with fastavro, byte for byte and value for value, on every schema."""

from __future__ import annotations

import io
import math
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from stream_app.domain.reasons import Reason
from stream_app.wire import codecs
from stream_app.wire.codecs import DecodeError
from stream_app.wire.compiled import compile_schema
from stream_app.wire.schemas import SchemaVersion, parse_file

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "avro_schemas"
SCHEMAS = sorted(SCHEMA_DIR.glob("*.avsc"))


def _value(t: Any, rng: random.Random, depth: int = 0) -> Any:  # noqa: C901, PLR0911, PLR0912 - per type
    """A random value of Avro type ``t`` (timestamps as epoch ms, as the processor writes them)."""
    if isinstance(t, list):
        branch = rng.choice(t)
        return None if branch == "null" else _value(branch, rng, depth)
    if isinstance(t, str):
        t = {"type": t}
    kind = t["type"]
    if t.get("logicalType") == "timestamp-millis":
        return rng.choice([0, -86_400_000, 1_754_000_000_123, rng.randint(0, 4_102_444_800_000)])
    if kind == "record":
        return {f["name"]: _value(f["type"], rng, depth + 1) for f in t["fields"]}
    if kind == "enum":
        return rng.choice(t["symbols"])
    if kind == "array":
        return [_value(t["items"], rng, depth + 1) for _ in range(rng.randint(0, 3 if depth < 3 else 0))]
    if kind == "map":
        return {_text(rng): _value(t["values"], rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 63, -64, 64, 2**31 - 1, -(2**31), rng.randint(-(10**6), 10**6)])
    if kind == "long":
        return rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randint(-(2**40), 2**42)])
    if kind in ("double", "float"):
        return rng.choice([0.0, -0.0, 1.5, -2.25, 1e300, math.inf, rng.uniform(-1e6, 1e6)])
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 40))
    if kind == "string":
        return _text(rng)
    raise AssertionError(kind)


def _text(rng: random.Random) -> str:
    # lengths either side of 64 bytes, the one-byte length's limit
    size = rng.choice([rng.randint(0, 30), rng.randint(60, 66)])
    return "".join(rng.choice(string.ascii_letters + "đĐăâêôơưạ̀ 水") for _ in range(size))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.fixture(params=SCHEMAS, ids=[p.name for p in SCHEMAS])
def schema(request: pytest.FixtureRequest) -> SchemaVersion:
    path: Path = request.param
    return parse_file(path)


def test_every_schema_of_the_project_compiles(schema: SchemaVersion) -> None:
    assert schema.compiled is not None


def test_compiled_writer_and_reader_agree_with_fastavro(schema: SchemaVersion) -> None:
    assert schema.compiled is not None
    write, read = schema.compiled.write, schema.compiled.read
    rng = random.Random(schema.file_name)
    for _ in range(300):
        record = _value(schema.parsed, rng)
        buf = io.BytesIO()
        schemaless_writer(buf, schema.fast, record)
        expected = buf.getvalue()
        assert write(record) == expected
        reference = schemaless_reader(io.BytesIO(expected), schema.fast, None)
        assert _same(read(expected), reference)
        assert _same(read(expected, epoch_ms=True), _in_ms(reference))
        assert codecs.encode(schema, record)[10:] == expected


def _in_ms(value: Any) -> Any:
    """fastavro's record with its datetimes as epoch milliseconds (what ``epoch_ms`` reads)."""
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: _in_ms(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_in_ms(v) for v in value]
    return value


def test_what_the_compiled_reader_accepts_fastavro_reads_the_same(schema: SchemaVersion) -> None:
    """Corrupted bodies (bytes flipped, cut, varints and lengths at their one-byte limits): whatever
    the compiled reader reads without raising, fastavro reads to the very same record."""
    assert schema.compiled is not None
    rng = random.Random(f"mutate-{schema.file_name}")
    for _ in range(400):
        record = _value(schema.parsed, rng)
        body = bytearray(schema.compiled.write(record))
        for _ in range(rng.randint(1, 3)):
            if body:
                edge = [0x00, 0x7E, 0x7F, 0x80, 0x81, 0xFF, rng.randrange(256)]
                body[rng.randrange(len(body))] = rng.choice(edge)
        mutated = bytes(body[: rng.randint(0, len(body))] if rng.random() < 0.2 else body)
        try:
            compiled = schema.compiled.read(mutated)
        except Exception:  # noqa: S112 - given up on: fastavro decides, as the codec does
            continue
        assert _same(compiled, schemaless_reader(io.BytesIO(mutated), schema.fast, None))


def test_what_the_compiled_writer_does_not_take_goes_to_fastavro(schema: SchemaVersion) -> None:
    """Datetimes for timestamps, ints for doubles, missing fields with defaults: fastavro's coercions."""
    rng = random.Random(1)
    record = _value(schema.parsed, rng)
    for field in schema.parsed["fields"]:
        t = field["type"]
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            record[field["name"]] = datetime(2025, 8, 1, 7, 30, 0, 123000, tzinfo=UTC)
        if t == "double":
            record[field["name"]] = 3
    buf = io.BytesIO()
    schemaless_writer(buf, schema.fast, record)
    assert (
        codecs.encode(schema, record)
        == codecs.SINGLE_OBJECT_MARKER + schema.fingerprint_bytes + buf.getvalue()
    )


def test_bytes_the_compiled_reader_does_not_read_cleanly_get_fastavros_answer() -> None:
    """Truncated bodies: the compiled reader gives up and fastavro's error is what the caller sees."""
    schema = parse_file(SCHEMA_DIR / "observation.v2.avsc")
    body = codecs.encode(schema, _value(schema.parsed, random.Random(7)))[10:]
    for cut in (1, 5, len(body) - 3):
        with pytest.raises(Exception) as fastavro_error:  # noqa: PT011 - whatever fastavro raises
            schemaless_reader(io.BytesIO(body[:cut]), schema.fast, None)
        with pytest.raises(DecodeError) as decoded:
            codecs._read_body(body[:cut], schema, schema)
        assert decoded.value.reason == Reason.UNDECODABLE
        assert str(fastavro_error.value) in str(decoded.value)


def test_a_schema_with_a_union_of_several_types_is_left_to_fastavro() -> None:
    several = {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "int", "string"]}]}
    assert compile_schema(several) is None
