"""The per-record work every peer does, written once so that the floor, naive Faust and Quix Streams
do the same thing: decode → check → threshold → aggregate → output.

Pure Python over ``fastavro`` and the standard library only: it also runs in the Quix Streams
virtualenv, which cannot hold this project's dependencies (quixstreams pins an older
confluent-kafka). Everything it knows about the catalogue comes from a *peer spec*, a JSON file
the harness writes from the real catalogue and schemas (:func:`bench.workload.peer_spec`).

It is a simplified version of what the worker does (no periods, calendars, rule kinds, hysteresis,
revisions, re-keying or exactly-once state): a peer doing less work per record than the worker is
the conservative side of a comparison.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LEN = 10


class Rejected(Exception):  # noqa: N818 - a verdict, not an error condition of the peer
    """A record the pipeline refuses, with a reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IndicatorRule:
    """What the peers check of one indicator."""

    unit: str
    low: float
    high: float
    reporters: frozenset[str]
    bound: float | None  # first alert level's lower bound; None: never alerts


@dataclass(frozen=True, slots=True)
class Result:
    """One accepted observation's outputs."""

    entity: str
    aggregate: dict[str, Any]
    output: bytes
    alert: bytes | None  # set when the alert state changed (crossed the bound either way)


def load_spec(path: str | Path) -> dict[str, Any]:
    """The peer spec written by the harness."""
    spec: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return spec


class Pipeline:
    """Decode, check and aggregate observations as the peer spec says."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.reader = parse_schema(spec["observation_reader"])
        self.writers = {
            int(fingerprint): parse_schema(schema)
            for fingerprint, schema in spec["observation_writers"].items()
        }
        self.rules = {
            code: IndicatorRule(
                unit=r["unit"],
                low=float(r["min"]),
                high=float(r["max"]),
                reporters=frozenset(r["reporters"]),
                bound=r["bound"],
            )
            for code, r in spec["indicators"].items()
        }
        self.station_bounds: dict[str, float] = spec["station_bounds"]
        self.reporter_of: dict[str, str] = spec["input_topics"]

    # -- decode ---------------------------------------------------------------------------------
    def decode(self, raw: bytes) -> dict[str, Any]:
        """Avro single-object (any known writer version, read as the newest) or a JSON document."""
        if raw.startswith(SINGLE_OBJECT_MARKER) and len(raw) >= HEADER_LEN:
            writer = self.writers.get(int.from_bytes(raw[2:HEADER_LEN], "little"))
            if writer is None:
                raise Rejected("unknown_schema")
            try:
                record = schemaless_reader(io.BytesIO(raw[HEADER_LEN:]), writer, self.reader)
            except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
                raise Rejected("undecodable") from exc
            if not isinstance(record, dict):
                raise Rejected("undecodable")
            return record
        if raw.lstrip()[:1] == b"{":
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise Rejected("undecodable") from exc
            if not isinstance(doc, dict):
                raise Rejected("schema_mismatch")
            return doc
        raise Rejected("undecodable")

    # -- check ----------------------------------------------------------------------------------
    def check(self, record: dict[str, Any], topic: str) -> IndicatorRule:
        """The indicator rule of an acceptable record; raises :class:`Rejected` otherwise."""
        rule = self.rules.get(record.get("indicator", ""))
        if rule is None:
            raise Rejected("unknown_indicator")
        reporter = self.reporter_of.get(topic, record.get("reporter", ""))
        if reporter not in rule.reporters:
            raise Rejected("indicator_not_allowed")
        if record.get("unit") != rule.unit:
            raise Rejected("unit_mismatch")
        value = record.get("value")
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise Rejected("value_not_finite")
        if not rule.low <= value <= rule.high:
            raise Rejected("out_of_range")
        return rule

    def bound(self, record: dict[str, Any], rule: IndicatorRule) -> float | None:
        """The alert bound of the record's indicator at its station (a station's own levels win)."""
        station = record.get("station")
        if station:
            found = self.station_bounds.get(f"{record['indicator']}|{station}")
            if found is not None:
                return found
        return rule.bound

    # -- aggregate ------------------------------------------------------------------------------
    def step(self, record: dict[str, Any], topic: str, previous: dict[str, Any] | None) -> Result:
        """Check one decoded record and fold it into its entity's previous aggregate (or None)."""
        rule = self.check(record, topic)
        value = float(record["value"])
        event_time = _millis(record.get("event_time"))
        bound = self.bound(record, rule)
        above = bound is not None and value >= bound
        entity = entity_of(record)
        if previous is None:
            agg: dict[str, Any] = {"count": 0, "sum": 0.0, "min": value, "max": value, "above": False}
        else:
            agg = dict(previous)
        was_above = bool(agg["above"])
        agg["count"] = int(agg["count"]) + 1
        agg["sum"] = float(agg["sum"]) + value
        agg["min"] = min(float(agg["min"]), value)
        agg["max"] = max(float(agg["max"]), value)
        agg["latest"] = value
        agg["latest_time"] = event_time
        agg["above"] = above
        output = json.dumps(
            {
                "entity": entity,
                "observation_id": record.get("observation_id"),
                "event_time": event_time,
                **agg,
            }
        ).encode()
        alert = None
        if above != was_above:
            alert = json.dumps(
                {
                    "entity": entity,
                    "observation_id": record.get("observation_id"),
                    "transition": "FIRING" if above else "RESOLVED",
                    "value": value,
                    "bound": bound,
                }
            ).encode()
        return Result(entity, agg, output, alert)


def entity_of(record: dict[str, Any]) -> str:
    """``indicator|region|station`` (station empty for regional indicators), as the worker keys."""
    return f"{record['indicator']}|{record['region']}|{record.get('station') or ''}"


def _millis(value: Any) -> int:
    # fastavro returns timestamp-millis as aware datetimes; JSON documents carry ints or ISO strings.
    if isinstance(value, int):
        return value
    timestamp = getattr(value, "timestamp", None)
    if timestamp is not None:
        return int(timestamp() * 1000)
    return 0
