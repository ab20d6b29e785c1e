"""Avro binary for the project's own schemas, compiled to Python once per schema version.

fastavro interprets a schema on every call (about 11 µs to read and 15 µs to write an observation on
this machine kind, most of it per-call and per-field dispatch). The records the processor reads and
writes on its hot path always have the same few shapes, so each schema version is turned once into a
Python function that reads or writes exactly that shape, about twice as fast.

They are an accelerator, never a second definition of the format: a value the compiled writer does not
take as is (a missing field, an int where a double is declared, a datetime for a timestamp, a union of
several types) and any byte string the compiled reader does not read cleanly go to fastavro, which then
writes, coerces or refuses exactly as it always did. ``tests/unit/test_compiled_avro.py`` checks both
directions byte for byte and value for value against fastavro, on every schema in ``avro_schemas/``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class Unsupported(Exception):  # noqa: N818 - a signal, not an error: "let fastavro do it"
    """This value or these bytes are for fastavro."""


# -------------------------------------------------------------------------------- runtime helpers


def _wlong(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _rlong(b: bytes, pos: int) -> tuple[int, int]:
    c = b[pos]
    pos += 1
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        if shift > 63:
            raise Unsupported
        c = b[pos]
        pos += 1
        n |= (c & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _rbytes(b: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _rlong(b, pos)
    end = pos + n
    if n < 0 or end > len(b):
        raise Unsupported
    return b[pos:end], end


def _rstr(b: bytes, pos: int) -> tuple[str, int]:
    n, pos = _rlong(b, pos)
    end = pos + n
    if n < 0 or end > len(b):
        raise Unsupported
    return b[pos:end].decode(), end


def _timestamp_millis(ms: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ms * 1000)


_RUNTIME: dict[str, Any] = {
    "_wlong": _wlong,
    "_rlong": _rlong,
    "_rbytes": _rbytes,
    "_rstr": _rstr,
    "_ts": _timestamp_millis,
    "_pack_d": struct.Struct("<d").pack,
    "_pack_f": struct.Struct("<f").pack,
    "_unpack_d": struct.Struct("<d").unpack_from,
    "_unpack_f": struct.Struct("<f").unpack_from,
    "Unsupported": Unsupported,
    "_INT_MIN": _INT_MIN,
    "_INT_MAX": _INT_MAX,
    "_LONG_MIN": _LONG_MIN,
    "_LONG_MAX": _LONG_MAX,
}


# -------------------------------------------------------------------------------- code generation


class _Generator:
    """Writes the Python source of one schema's reader and writer functions."""

    def __init__(self, *, epoch_ms: bool = False) -> None:
        self.epoch_ms = epoch_ms  # read timestamp-millis as the int it is, not a datetime
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.records: dict[str, tuple[str, str]] = {}  # record name -> (writer fn, reader fn)
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any) -> str:
        name = self.name("_c")
        self.constants[name] = value
        return name

    def record(self, schema: Mapping[str, Any]) -> tuple[str, str]:
        full = str(schema["name"])
        if full in self.records:
            return self.records[full]
        write_fn, read_fn = self.name("_w"), self.name("_r")
        self.records[full] = (write_fn, read_fn)
        body_w: list[str] = []
        body_r: list[str] = []
        names = []
        for field in schema["fields"]:
            var = self.name("v")
            names.append((field["name"], var))
            body_w.append(f"    {var} = d[{field['name']!r}]")
            body_w.extend(self.write(field["type"], var, "    "))
            body_r.extend(self.read(field["type"], var, "    "))
        self.lines.append(f"def {write_fn}(out, d):")
        self.lines.extend(body_w or ["    pass"])
        self.lines.append(f"def {read_fn}(b, pos):")
        self.lines.extend(body_r)
        items = ", ".join(f"{n!r}: {v}" for n, v in names)
        self.lines.append(f"    return {{{items}}}, pos")
        return write_fn, read_fn

    # writing: statements appending ``var`` (of schema ``t``) to ``out``
    def write(self, t: Any, var: str, ind: str) -> list[str]:
        if isinstance(t, list):
            return self._write_union(t, var, ind)
        kind, logical = _kind(t)
        if kind == "record":
            write_fn, _ = self.record(t)
            return [f"{ind}if type({var}) is not dict: raise Unsupported", f"{ind}{write_fn}(out, {var})"]
        if kind == "enum":
            index = self.const({s: i for i, s in enumerate(t["symbols"])})
            i = self.name("i")
            return [
                f"{ind}{i} = {index}.get({var}) if type({var}) is str else None",
                f"{ind}if {i} is None: raise Unsupported",
                f"{ind}_wlong(out, {i})",
            ]
        if kind == "array":
            item = self.name("x")
            return [
                f"{ind}if type({var}) is not list: raise Unsupported",
                f"{ind}if {var}:",
                f"{ind}    _wlong(out, len({var}))",
                f"{ind}    for {item} in {var}:",
                *self.write(t["items"], item, ind + "        "),
                f"{ind}out.append(0)",
            ]
        if kind == "map":
            key, item = self.name("k"), self.name("x")
            return [
                f"{ind}if type({var}) is not dict: raise Unsupported",
                f"{ind}if {var}:",
                f"{ind}    _wlong(out, len({var}))",
                f"{ind}    for {key}, {item} in {var}.items():",
                *self._write_primitive("string", key, ind + "        "),
                *self.write(t["values"], item, ind + "        "),
                f"{ind}out.append(0)",
            ]
        if kind in _PRIMITIVES and (logical is None or (logical == "timestamp-millis" and kind == "long")):
            return self._write_primitive(kind, var, ind)  # a timestamp given as epoch ms: a long
        raise Unsupported(f"type {kind}/{logical}")

    def _write_primitive(self, t: str, var: str, ind: str) -> list[str]:
        return self._primitive(_WRITE_PRIMITIVE, t, var, ind)

    def _write_union(self, branches: list[Any], var: str, ind: str) -> list[str]:
        null_index = _null_index(branches)
        other = branches[1 - null_index]
        return [
            f"{ind}if {var} is None:",
            f"{ind}    out.append({2 * null_index})",  # zigzag of the branch index
            f"{ind}else:",
            f"{ind}    out.append({2 * (1 - null_index)})",
            *self.write(other, var, ind + "    "),
        ]

    # reading: statements setting ``var`` from ``b`` at ``pos``
    def read(self, t: Any, var: str, ind: str) -> list[str]:  # noqa: PLR0911 - one branch per Avro type
        if isinstance(t, list):
            null_index = _null_index(t)
            i = self.name("i")
            return [  # the branch index is one byte: its zigzag, 0 or 2 (anything else: fastavro's)
                f"{ind}{i} = b[pos]",
                f"{ind}pos += 1",
                f"{ind}if {i} == {2 * null_index}:",
                f"{ind}    {var} = None",
                f"{ind}elif {i} == {2 * (1 - null_index)}:",
                *self.read(t[1 - null_index], var, ind + "    "),
                f"{ind}else: raise Unsupported",
            ]
        kind, logical = _kind(t)
        if kind == "record":
            _, read_fn = self.record(t)
            return [f"{ind}{var}, pos = {read_fn}(b, pos)"]
        if kind == "enum":
            symbols = self.const(tuple(t["symbols"]))
            i = self.name("i")
            return [  # a one-byte index (zigzag 2k, k < 64); anything else: fastavro's
                f"{ind}{i} = b[pos]",
                f"{ind}pos += 1",
                f"{ind}if {i} & 0x81 or {i} >> 1 >= {len(t['symbols'])}: raise Unsupported",
                f"{ind}{var} = {symbols}[{i} >> 1]",
            ]
        if kind in ("array", "map"):
            n, item, key = self.name("n"), self.name("x"), self.name("k")
            lines = [
                f"{ind}{var} = {'[]' if kind == 'array' else '{}'}",
                f"{ind}while True:",
                f"{ind}    {n}, pos = _rlong(b, pos)",
                f"{ind}    if {n} == 0: break",
                f"{ind}    if {n} < 0: raise Unsupported",  # a block with its byte size: fastavro's
                f"{ind}    for _ in range({n}):",
            ]
            inner = ind + "        "
            if kind == "array":
                lines += [*self.read(t["items"], item, inner), f"{inner}{var}.append({item})"]
            else:
                lines += [
                    f"{inner}{key}, pos = _rstr(b, pos)",
                    *self.read(t["values"], item, inner),
                    f"{inner}{var}[{key}] = {item}",
                ]
            return lines
        if kind == "long" and logical == "timestamp-millis":
            if self.epoch_ms:
                return self._read_primitive("long", var, ind)
            return [*self._read_primitive("long", var, ind), f"{ind}{var} = _ts({var})"]
        if kind in _PRIMITIVES and logical is None:
            return self._read_primitive(kind, var, ind)
        raise Unsupported(f"type {kind}/{logical}")

    def _read_primitive(self, t: str, var: str, ind: str) -> list[str]:
        return self._primitive(_READ_PRIMITIVE, t, var, ind)

    def _primitive(self, statements: Mapping[str, tuple[str, ...]], t: str, var: str, ind: str) -> list[str]:
        """``statements[t]`` (writing or reading a primitive) for ``var``, with a fresh name of its own."""
        if t not in statements:
            raise Unsupported(t)
        fresh = self.name("e")
        return [ind + line.format(v=var, e=fresh) for line in statements[t]]


def _kind(t: str | Mapping[str, Any]) -> tuple[Any, Any]:
    """A (non-union) schema's type and logical type; a name must be a primitive's: a reference to a
    named type is not compiled."""
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise Unsupported(f"named type reference {t}")
        return t, None
    return t["type"], t.get("logicalType")


def _null_index(branches: list[Any]) -> int:
    """Where ``null`` is in a union: the only unions compiled are [null, T] and [T, null]."""
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("union other than [null, T]")
    return branches.index("null")


# Statements writing a primitive ``{v}`` (``{e}``: a fresh name) and reading one into ``{v}``.
_WRITE_PRIMITIVE: dict[str, tuple[str, ...]] = {
    "null": ("if {v} is not None: raise Unsupported",),
    "boolean": ("if type({v}) is not bool: raise Unsupported", "out.append(1 if {v} else 0)"),
    # |n| < 64 is one byte, its zigzag, appended in line
    "int": (
        "if type({v}) is not int or not _INT_MIN <= {v} <= _INT_MAX: raise Unsupported",
        "if -64 <= {v} < 64: out.append(({v} << 1) ^ ({v} >> 63))",
        "else: _wlong(out, {v})",
    ),
    "long": (
        "if type({v}) is not int or not _LONG_MIN <= {v} <= _LONG_MAX: raise Unsupported",
        "if -64 <= {v} < 64: out.append(({v} << 1) ^ ({v} >> 63))",
        "else: _wlong(out, {v})",
    ),
    "double": ("if type({v}) is not float: raise Unsupported", "out += _pack_d({v})"),
    "float": ("if type({v}) is not float: raise Unsupported", "out += _pack_f({v})"),
    "bytes": ("if type({v}) is not bytes: raise Unsupported", "_wlong(out, len({v}))", "out += {v}"),
    "string": (
        "if type({v}) is not str: raise Unsupported",
        "{e} = {v}.encode()",
        "if len({e}) < 64: out.append(len({e}) << 1)",
        "else: _wlong(out, len({e}))",
        "out += {e}",
    ),
}


def _varint_read(low: str, high: str) -> tuple[str, ...]:
    """Statements reading a zigzag varint into ``{v}``, one byte in line, bounded by ``low``/``high``."""
    return (
        "{v} = b[pos]",
        "if {v} < 0x80:",
        "    {v} = ({v} >> 1) ^ -({v} & 1)",
        "    pos += 1",
        "else:",
        "    {v}, pos = _rlong(b, pos)",
        f"    if not {low} <= {{v}} <= {high}: raise Unsupported",
    )


_READ_PRIMITIVE: dict[str, tuple[str, ...]] = {
    "null": ("{v} = None",),
    "boolean": ("{v} = b[pos]", "pos += 1", "if {v} > 1: raise Unsupported", "{v} = {v} == 1"),
    # a varint of one byte (|n| < 64) is read in line: most counts, lengths and small numbers
    "int": _varint_read("_INT_MIN", "_INT_MAX"),
    "long": _varint_read("_LONG_MIN", "_LONG_MAX"),
    "double": ("({v},) = _unpack_d(b, pos)", "pos += 8"),
    "float": ("({v},) = _unpack_f(b, pos)", "pos += 4"),
    "bytes": ("{v}, pos = _rbytes(b, pos)",),
    "string": (
        "{e} = b[pos]",
        "if {e} < 0x80 and not {e} & 1:",  # a length under 64 bytes
        "    {e} = pos + 1 + ({e} >> 1)",
        "    if {e} > len(b): raise Unsupported",
        "    {v} = b[pos + 1 : {e}].decode()",
        "    pos = {e}",
        "else:",
        "    {v}, pos = _rstr(b, pos)",
    ),
}


def compile_schema(schema: Any) -> Compiled | None:
    """The compiled writer (record -> Avro body) and reader (Avro body -> record) of ``schema`` (a record
    schema, as parsed JSON); None for a schema using what this module does not compile."""
    if not isinstance(schema, Mapping) or schema.get("type") != "record":
        return None
    generator = _Generator()
    try:
        generator.record(schema)
    except Unsupported:
        return None
    return Compiled(schema, generator)


class Compiled:
    """The compiled writer and reader of one schema (picklable: it compiles again from the schema)."""

    def __init__(self, schema: Any, generator: _Generator | None = None) -> None:
        self.schema = schema
        if generator is None:
            generator = _Generator()
            generator.record(schema)
        write_fn, read_fn = generator.records[str(schema["name"])]
        namespace = _exec(schema, generator)
        self._write_record = namespace[write_fn]
        self._read_record = namespace[read_fn]
        in_ms = _Generator(epoch_ms=True)
        _, read_ms_fn = in_ms.record(schema)
        self._read_record_ms = _exec(schema, in_ms)[read_ms_fn]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Compiled, (self.schema,))

    def write(self, record: Mapping[str, Any]) -> bytes:
        """The Avro body of ``record``; raises when a value is not exactly of its declared type."""
        out = bytearray()
        self._write_record(out, record)
        return bytes(out)

    def read(self, body: bytes, *, epoch_ms: bool = False) -> dict[str, Any]:
        """The record of an Avro body; raises on bytes it does not read cleanly. ``epoch_ms``: its
        timestamps as epoch milliseconds (ints) rather than datetimes."""
        record, _ = (self._read_record_ms if epoch_ms else self._read_record)(body, 0)
        return record  # type: ignore[no-any-return]


def _exec(schema: Any, generator: _Generator) -> dict[str, Any]:
    namespace: dict[str, Any] = {**_RUNTIME, **generator.constants}
    source = "\n".join(generator.lines)
    exec(compile(source, f"<avro {schema['name']}>", "exec"), namespace)  # noqa: S102 - generated here
    return namespace
