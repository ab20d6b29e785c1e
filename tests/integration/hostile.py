"""A hostile stream, built from a seed: good observations interleaved with every kind of bad record a
stage can meet, and what each must come to. Pure: no Kafka, no Redis (``test_hostile_stream`` sends it).

What it holds:
- good observations (MPS's daily traffic deaths in every province, MAE's hourly VN_AQI at six
  stations, NTSC co-reporting Đà Nẵng under MPS's very ids), some sent twice, some corrected, some as
  JSON; their expected count and exact sum per entity, series and reporting year;
- records the intake must refuse, each with its reason (bounds, scopes, sizes), and fuzz (random bytes,
  mutated Avro, broken JSON) whose only duty is to end somewhere;
- records forged onto the internal topics (undecodable, foreign subjects, misrouted, unknown entities,
  ticks for another partition or out of time), each with the reason the stage must give;
- entities whose Redis state is corrupted before the worker starts, whose records must be set aside
  (``state_unreadable``, ``step_failed``, ``state_write_failed``) while every other entity goes on.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stream_app.domain.aggregates import periods_of, series_of
from stream_app.domain.catalogue import Catalogue
from stream_app.kafka.partitioning import partition_for
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaRegistry

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
AQ_STATIONS = {
    "HN-AQ-HOANKIEM": "01",
    "HCM-AQ-Q1": "79",
    "HP-AQ-LECHAN": "31",
    "DN-AQ-HAICHAU": "48",
    "HUE-AQ-PHUHOI": "46",
    "CT-AQ-NINHKIEU": "92",
}
DA_NANG = "48"
FUZZ_REPORTER = "MOF"  # fuzz goes to this reporter's topic only: its outcomes are not counted one by one
# Entities whose Redis state the test corrupts before the worker starts, and what their records come to.
CORRUPT = {
    "TRF.DEATHS|01|-": "state_unreadable",  # the state key is a string: HGETALL answers WRONGTYPE
    "TRF.DEATHS|79|-": "state_unreadable",  # a state field that does not decode
    "TRF.DEATHS|31|-": "step_failed",  # an open period with a label no calendar has: the step raises
    "TRF.DEATHS|92|-": "state_write_failed",  # the periods index is a string: the commit is refused
}


@dataclass
class Sent:
    """One record to send: where, its key and bytes, and (when known) what it must come to."""

    topic_role: str  # "input:<REPORTER>", "repartition", "rollup", "directives"
    key: bytes | None
    value: bytes
    partition: int | None = None
    reason: str | None = None  # the dead-letter reason it must get; None: accepted (or fuzz)
    fuzz: bool = False
    entity: str | None = None  # a good observation's entity


@dataclass
class Hostile:
    """The stream and what must come of it."""

    sent: list[Sent] = field(default_factory=list)
    # (entity, series, reporting-year label) -> (count, exact sum) of the good observations
    expected: dict[tuple[str, str, str], tuple[int, Decimal]] = field(default_factory=dict)
    # (indicator, series, year label) -> national roll-up sum of the provinces that must count
    national: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    good: int = 0  # distinct good observations (reporter, id): each must be applied exactly once

    def count(self, role: str) -> int:
        return sum(1 for s in self.sent if s.topic_role == role)


def build(
    catalogue: Catalogue, schemas: SchemaRegistry, now_ms: int, seed: int, partitions: dict[str, int]
) -> Hostile:
    """The hostile stream for a worker whose clock reads ``now_ms``; ``partitions`` of the internal
    topics by role (``repartition``, ``rollup``)."""
    rng = random.Random(seed)
    out = Hostile()
    schema = schemas.latest("observation")
    good = _good(catalogue, now_ms, rng)
    finals: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}  # (reporter, id) -> record, final value
    for record in good:
        as_json = rng.random() < 0.1
        value = _json(record) if as_json else codecs.encode(schema, record)
        entity = f"{record['indicator']}|{record['region']}|{record.get('station') or '-'}"
        out.sent.append(Sent(f"input:{record['reporter']}", _key(record), value, entity=entity))
        identity = (record["reporter"], record["observation_id"])
        known = finals.get(identity)
        if known is None or known[0]["revision"] <= record["revision"]:
            finals[identity] = (record, record["value"])
    _expect(catalogue, out, finals)
    bad = _refused_at_intake(catalogue, schemas, now_ms, rng) + _fuzz(schemas, now_ms, rng)
    forged = _forged_internal(catalogue, schemas, now_ms, rng, partitions)
    # interleave: the bad and forged records land between good ones, in every batch
    mixed = out.sent + bad + forged
    rng.shuffle(mixed)
    out.sent = mixed
    return out


# ---------------------------------------------------------------------------------------- good


def _good(catalogue: Catalogue, now_ms: int, rng: random.Random) -> list[dict[str, Any]]:
    provinces = sorted(c for c, r in catalogue.regions.items() if r.kind == "current")
    records: list[dict[str, Any]] = []
    hour = now_ms - now_ms % HOUR_MS
    for region in provinces:  # 34 x 150 daily reports
        for day in range(1, 151):
            at = hour - day * DAY_MS
            records.append(
                _obs("MPS", "TRF.DEATHS", region, None, float(rng.randint(0, 20)), at, f"mps-{region}-{day}")
            )
    for day in range(1, 41):  # NTSC co-reports Đà Nẵng under MPS's ids, at a higher revision
        at = hour - day * DAY_MS
        records.append(
            _obs("NTSC", "TRF.DEATHS", DA_NANG, None, 999.0, at, f"mps-{DA_NANG}-{day}", revision=2)
        )
    for station, region in AQ_STATIONS.items():  # 6 x 500 hourly readings
        for back in range(1, 501):
            value = float(rng.choice((20, 45, 80, 120, 160, 210, 260)))
            records.append(
                _obs("MAE", "ENV.AQI", region, station, value, hour - back * HOUR_MS, f"aqi-{station}-{back}")
            )
    firsts = list(records)
    for record in rng.sample(firsts, 300):  # sent twice: the second is a duplicate
        records.append(dict(record))
    for record in rng.sample(firsts, 200):  # corrected: a higher revision with another value
        records.append({**record, "revision": record["revision"] + 1, "value": record["value"] + 1.0})
    return records


def _obs(  # noqa: PLR0917 - the fields of an observation, in the contract's order
    reporter: str,
    indicator: str,
    region: str,
    station: str | None,
    value: float,
    at: int,
    observation_id: str,
    revision: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    units = {"TRF.DEATHS": "persons", "ENV.AQI": "index", "TRF.ACCIDENTS": "cases", "PWR.SOURCE_SHARE": "%"}
    record: dict[str, Any] = {
        "observation_id": observation_id,
        "revision": revision,
        "reporter": reporter,
        "indicator": indicator,
        "region": region,
        "station": station,
        "value": value,
        "unit": units[indicator],
        "event_time": at,
        "report_time": at + 60_000,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }
    record.update(extra)
    return record


def _key(record: dict[str, Any]) -> bytes:
    return f"{record['region']}:{record.get('station') or '-'}".encode()


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _expect(
    catalogue: Catalogue, out: Hostile, finals: dict[tuple[str, str], tuple[dict[str, Any], float]]
) -> None:
    """Count and exact sum per entity, series and reporting year; the national roll-up of MPS's deaths."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    sums: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for (reporter, _), (record, value) in finals.items():
        indicator = catalogue.indicators[record["indicator"]]
        entity = f"{record['indicator']}|{record['region']}|{record.get('station') or '-'}"
        if entity in CORRUPT:
            continue
        authority = catalogue.authority(indicator.code, record["region"], record["event_time"])
        series = series_of({} if reporter == authority else {"reporter": reporter})
        year = periods_of(
            indicator.frequency, indicator.calendar, indicator.deadline_day, record["event_time"]
        )[-1]
        key = (entity, series, year.label)
        counts[key] += 1
        sums[key] += Decimal(repr(value))
        out.good += 1
        if indicator.code == "TRF.DEATHS":
            national = ("TRF.DEATHS", series, year.label)
            out.national[national] = out.national.get(national, Decimal(0)) + Decimal(repr(value))
    out.expected = {k: (counts[k], sums[k]) for k in counts}


# ---------------------------------------------------------------------------------------- intake


def _refused_at_intake(
    catalogue: Catalogue, schemas: SchemaRegistry, now_ms: int, rng: random.Random
) -> list[Sent]:
    schema = schemas.latest("observation")
    at = now_ms - 2 * HOUR_MS
    aqi = {"reporter": "MAE", "indicator": "ENV.AQI", "region": "01", "station": "HN-AQ-HOANKIEM"}
    cases: list[tuple[str, dict[str, Any]]] = [
        # the poison: a 230 KB breakdown value on an otherwise valid VN_AQI reading
        ("unknown_breakdown", {**aqi, "breakdowns": {"district": "x" * 230_000}}),
        (
            "breakdown_value_invalid",
            {
                "reporter": "NSMO",
                "indicator": "PWR.SOURCE_SHARE",
                "region": "VN",
                "station": None,
                "breakdowns": {"source": "nuclear\n"},
            },
        ),
        (
            "too_many_breakdowns",
            {
                "reporter": "NSMO",
                "indicator": "PWR.SOURCE_SHARE",
                "region": "VN",
                "station": None,
                "breakdowns": {f"b{i}": "v" for i in range(6)},
            },
        ),
        ("observation_id_invalid", {**aqi, "observation_id": "has a space"}),
        ("observation_id_invalid", {**aqi, "observation_id": "x" * 200}),
        ("report_time_invalid", {**aqi, "report_time": 1_104_537_600_000}),  # 2005
        ("text_too_long", {**aqi, "report_ref": "r" * 1000}),
        # scopes: a province indicator at "VN" would collide with the national roll-up's key
        (
            "region_not_allowed",
            {"reporter": "MPS", "indicator": "TRF.ACCIDENTS", "region": "VN", "station": None},
        ),
        (
            "station_not_allowed",
            {"reporter": "MPS", "indicator": "TRF.DEATHS", "region": "01", "station": "HN-AQ-HOANKIEM"},
        ),
        ("station_wrong_kind", {**aqi, "station": "HN-LONGBIEN"}),
        ("unknown_indicator", {**aqi, "indicator": "NO.SUCH"}),
        ("unit_mismatch", {**aqi, "unit": "ppm"}),
        ("value_out_of_range", {**aqi, "value": 9999.0}),
    ]
    out: list[Sent] = []
    for n in range(12):  # each case a dozen times, under fresh ids
        for reason, fields in cases:
            reporter = fields["reporter"]
            record = _obs(reporter, "ENV.AQI", "01", "HN-AQ-HOANKIEM", 40.0, at, f"bad-{reason}-{n}")
            record.update(fields)
            if record["indicator"] in ("TRF.ACCIDENTS", "TRF.DEATHS"):
                record["unit"] = "cases" if record["indicator"] == "TRF.ACCIDENTS" else "persons"
                record["value"] = 3.0
            if record["indicator"] == "PWR.SOURCE_SHARE":
                record["unit"], record["value"] = "%", 10.0
            if reason == "unit_mismatch":
                record["unit"] = "ppm"
            value = codecs.encode(schema, record) if n % 2 else _json(record)
            out.append(Sent(f"input:{reporter}", b"k", value, reason=reason))
    for n in range(10):
        out.append(Sent("input:MAE", b"k", b"{" + b" " * 300_000 + b"}", reason="oversized"))
        good = codecs.encode(schema, _obs("MAE", "ENV.AQI", "01", "HN-AQ-HOANKIEM", 40.0, at, f"big-key-{n}"))
        out.append(Sent("input:MAE", b"K" * 2048, good, reason="key_too_large"))
    return out


def _fuzz(schemas: SchemaRegistry, now_ms: int, rng: random.Random) -> list[Sent]:
    """Random bytes, Avro with a valid header and a mutated or random body, broken JSON: on MOF's topic,
    whose entities the test does not count (a mutation may well be a valid observation)."""
    schema = schemas.latest("observation")
    header = codecs.encode(schema, _fin(now_ms, "seed"))[:10]
    out: list[Sent] = []
    for n in range(1600):
        kind = n % 8
        if kind == 0:
            value = rng.randbytes(rng.randint(0, 400))
        elif kind == 1:
            value = header + rng.randbytes(rng.randint(0, 200))
        elif kind in (2, 3):
            body = bytearray(codecs.encode(schema, _fin(now_ms, f"fuzz-{n}")))
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(len(body))
                body[position] = rng.randrange(256)
            value = bytes(body)
        elif kind == 4:
            text = json.dumps(_fin(now_ms, f"fuzz-{n}"))
            value = text[: rng.randrange(1, len(text))].encode()
        elif kind == 5:
            value = json.dumps({rng.choice(("value", "event_time", "region", "x")): rng.random()}).encode()
        elif kind == 6:
            value = ("[" * 5000 + "]" * 5000).encode()
        else:
            doc = _fin(now_ms, f"fuzz-{n}")
            doc[rng.choice(list(doc))] = rng.choice((None, -1, "", [], {}, 1e308, "💥"))
            value = json.dumps(doc).encode()
        out.append(
            Sent(f"input:{FUZZ_REPORTER}", rng.choice((None, b"", rng.randbytes(8))), value, fuzz=True)
        )
    return out


def _fin(now_ms: int, observation_id: str) -> dict[str, Any]:
    return {
        "observation_id": observation_id,
        "revision": 0,
        "reporter": "MOF",
        "indicator": "FIN.CPI",
        "region": "01",
        "station": None,
        "value": 0.4,
        "unit": "%",
        "event_time": now_ms - 40 * DAY_MS,
        "report_time": now_ms - 30 * DAY_MS,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }


# ---------------------------------------------------------------------------------------- forged


def _forged_internal(
    catalogue: Catalogue,
    schemas: SchemaRegistry,
    now_ms: int,
    rng: random.Random,
    partitions: dict[str, int],
) -> list[Sent]:
    internal_n, rollup_n = partitions["repartition"], partitions["rollup"]
    out: list[Sent] = []
    tick = schemas.latest("tick")
    obs_schema = schemas.latest("observation")
    directive = schemas.latest("directive")
    contribution = schemas.latest("contribution")
    dead = schemas.latest("dead_letter")
    entity = "ENV.AQI|01|HN-AQ-HOANKIEM"
    home = partition_for(entity, internal_n)
    elsewhere = (home + 1) % internal_n
    reading = _obs("MAE", "ENV.AQI", "01", "HN-AQ-HOANKIEM", 40.0, now_ms - HOUR_MS, "forged")

    def directive_record(alert_key: str, **identity: str) -> dict[str, Any]:
        return {
            "directive_id": f"dir-{rng.getrandbits(48):x}",
            "alert_key": alert_key,
            "alert_id": "",
            "reporter": "MAE",
            "action": "COMMENT",
            "actor": "x",
            "assignee": None,
            "comment": None,
            "issued_at": now_ms,
            "due_at": None,
            "token_id": "",
            "writer": "",
            **identity,
        }

    no_such = "ENV.AQI|NO.SUCH|-"
    quiet = "HYD.WATER_LEVEL|01|HN-LONGBIEN"  # no value is sent there: none of its alerts ever fires
    for n in range(8):
        p = n % internal_n
        out += [
            Sent("repartition", None, rng.randbytes(40), partition=p, reason="undecodable"),
            Sent(
                "repartition",
                None,
                codecs.encode(
                    dead,
                    {
                        "reason": "x",
                        "message": "x",
                        "source_topic": "t",
                        "source_partition": 0,
                        "source_offset": 0,
                        "source_key": None,
                        "original": b"",
                        "rejected_at": now_ms,
                    },
                ),
                partition=p,
                reason="undecodable",
            ),
            Sent(
                "repartition",
                b"__tick__",
                codecs.encode(tick, {"partition": (p + 1) % internal_n, "now": now_ms, "source": "forged"}),
                partition=p,
                reason="tick_invalid",
            ),
            Sent(
                "repartition",
                b"__tick__",
                codecs.encode(tick, {"partition": p, "now": 4_102_444_800_000, "source": "forged"}),
                partition=p,
                reason="tick_invalid",
            ),  # 2100
            Sent(
                "repartition",
                b"__tick__",
                codecs.encode(tick, {"partition": p, "now": 1_230_768_000_000, "source": "forged"}),
                partition=p,
                reason="tick_invalid",
            ),  # 2009
            # the crash: a directive about an entity the catalogue cannot have
            Sent(
                "repartition",
                no_such.encode(),
                codecs.encode(directive, directive_record(f"levels:ENV.AQI|{no_such}")),
                partition=partition_for(no_such, internal_n),
                reason="unknown_entity",
            ),
            Sent(
                "repartition",
                b"\xff\xfe",
                codecs.encode(directive, directive_record(f"levels:ENV.AQI|{entity}")),
                partition=p,
                reason="undecodable",
            ),
            Sent(
                "repartition",
                entity.encode(),
                codecs.encode(obs_schema, {**reading, "observation_id": f"f-{n}"}),
                partition=elsewhere,
                reason="misrouted",
            ),
            Sent(
                "repartition",
                b"NO.SUCH|01|-",
                codecs.encode(obs_schema, {**reading, "indicator": "NO.SUCH", "station": None}),
                partition=p,
                reason="unknown_entity",
            ),
            Sent(
                "repartition",
                entity.encode(),
                codecs.encode(
                    obs_schema, {**reading, "observation_id": f"g-{n}", "event_time": 7_258_118_400_000}
                ),
                partition=home,
                reason="record_invalid",
            ),  # 2200
            # a well-formed directive about an alert that never fired: refused by the step, not poison
            Sent(
                "repartition",
                quiet.encode(),
                codecs.encode(directive, directive_record(f"levels:HYD.WATER_LEVEL|{quiet}")),
                partition=partition_for(quiet, internal_n),
                reason="unknown_alert",
            ),
        ]
        # through the center's own topic: as the workers' API would write it (a key of no entity), and
        # as nobody authenticated (what `stream-app directive` used to write)
        workers = Settings.model_fields["acl_app_user"].default
        as_the_api = {"token_id": "0123456789ab", "writer": f"User:{workers}"}
        out += [
            Sent(
                "directives",
                b"k",
                codecs.encode(directive, directive_record("levels:ENV.AQI|NO.SUCH|01|-", **as_the_api)),
                reason="unknown_alert",
            ),
            Sent(
                "directives",
                b"k",
                codecs.encode(directive, directive_record(f"levels:ENV.AQI|{entity}")),
                reason="unauthenticated_directive",
            ),
        ]
    routing = "TRF.DEATHS|VN"
    rollup_home = partition_for(routing, rollup_n)
    for n in range(6):
        item = {"source": "TRF.DEATHS|48|-", "seq": 1, "period": "|2026-12-03", "aggregate": "garbage"}
        out += [
            Sent("rollup", None, rng.randbytes(30), partition=n % rollup_n, reason="undecodable"),
            Sent(
                "rollup",
                b"NO.SUCH|VN",
                codecs.encode(
                    contribution,
                    {"indicator": "NO.SUCH", "target": "VN", "processing_time": now_ms, "items": []},
                ),
                partition=n % rollup_n,
                reason="contribution_invalid",
            ),
            Sent(
                "rollup",
                routing.encode(),
                codecs.encode(
                    contribution,
                    {"indicator": "TRF.DEATHS", "target": "VN", "processing_time": now_ms, "items": []},
                ),
                partition=(rollup_home + 1) % rollup_n,
                reason="misrouted",
            ),
            Sent(
                "rollup",
                routing.encode(),
                codecs.encode(
                    contribution,
                    {"indicator": "TRF.DEATHS", "target": "VN", "processing_time": now_ms, "items": [item]},
                ),
                partition=rollup_home,
                reason="contribution_invalid",
            ),
        ]
    return out
