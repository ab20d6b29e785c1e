"""The benchmark's input: a realistic mix of live observations from the simulator, pre-encoded once
and produced into each scenario's namespace; the peer spec; 16 years of daily history.

The mix is ``stream_app.simulation.live_feed`` (scenario ``mix``: the Hoàn Kiếm smog episode and the
Long Biên flood crest among background readings of every live feed, ~3% spoiled records, a tenth
of the good ones as JSON) with event times on a synthetic clock that ends now. ``BACKGROUND``
readings per round put about a tenth of the observations at or above their alert level.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import Namespace
from bench.peers.pipeline import Pipeline, Rejected
from stream_app.config.blueprint import Blueprint
from stream_app.kafka.config import confluent_config
from stream_app.tools.simulation.live import live_feed

BACKGROUND = 32  # background readings per scenario round: ~12% of observations above an alert level
INVALID_SHARE = 0.03
HISTORY_FROM, HISTORY_TO = "2010-01-01", "2025-12-31"


@dataclass(frozen=True, slots=True)
class Meta:
    """What identifies an accepted observation's outputs: its id (alerts name it) and its entity
    and event time (consolidated events carry the latest event time applied to the entity)."""

    observation_id: str
    entity: tuple[str, str]  # (indicator, station or region)
    event_ms: int


@dataclass(frozen=True, slots=True)
class Item:
    """One record to send: the reporter whose input topic it goes to, key and bytes."""

    reporter: str
    key: bytes
    value: bytes
    meta: Meta | None = None


@dataclass
class Mix:
    """Pre-encoded records and what they are made of."""

    items: list[Item]
    by_reporter: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    above_alert_level: int = 0
    json_encoded: int = 0
    seconds_to_generate: float = 0.0

    def describe(self) -> dict[str, Any]:
        n = max(1, len(self.items))
        return {
            "records": len(self.items),
            "by_reporter": dict(self.by_reporter),
            "invalid_share": self.invalid / n,
            "above_alert_level_share": self.above_alert_level / n,
            "json_share": self.json_encoded / n,
            "seconds_to_generate": self.seconds_to_generate,
        }


def peer_spec(blueprint: Blueprint) -> dict[str, Any]:
    """What the peers need of the catalogue and the schemas (see :mod:`bench.peers.pipeline`)."""
    catalogue, schemas = blueprint.catalogue, blueprint.schemas
    schemas_dir = blueprint.settings.schemas_dir

    def raw_schema(file_name: str) -> Any:
        return json.loads((schemas_dir / file_name).read_text(encoding="utf-8"))

    writers = {
        str(v.fingerprint): raw_schema(v.file_name)
        for v in schemas.by_fingerprint.values()
        if v.subject == "observation"
    }
    indicators = {}
    for code, indicator in catalogue.indicators.items():
        alerting = indicator.levels[indicator.alert_from_level :] if indicator.levels else ()
        indicators[code] = {
            "unit": indicator.unit,
            "min": indicator.min_value,
            "max": indicator.max_value,
            "reporters": sorted(indicator.reporters),
            "bound": alerting[0].lower if alerting and indicator.alert_from_level > 0 else None,
        }
    station_bounds = {}
    for station in catalogue.stations.values():
        if station.levels and station.levels_indicator in catalogue.indicators:
            indicator = catalogue.indicators[station.levels_indicator]
            alerting = catalogue.levels_for(indicator, station.code)[indicator.alert_from_level :]
            if alerting and indicator.alert_from_level > 0:
                station_bounds[f"{indicator.code}|{station.code}"] = alerting[0].lower
    return {
        "observation_reader": raw_schema(schemas.latest("observation").file_name),
        "observation_writers": writers,
        "indicators": indicators,
        "station_bounds": station_bounds,
        "input_topics": {t.name: t.reporter for t in blueprint.input_topics()},
    }


def generate_mix(
    blueprint: Blueprint,
    count: int,
    *,
    seed: int = 7,
    first_s: float | None = None,
    step_s: float = 0.01,
    keep_meta: bool = False,
) -> Mix:
    """``count`` records of the live mix, event times ``step_s`` apart from ``first_s`` (default:
    ending now). ``keep_meta`` keeps each accepted record's identity, to match its outputs."""
    started = time.perf_counter()
    ticks = itertools.count()
    first = first_s if first_s is not None else time.time() - count * step_s
    step = step_s
    feed = live_feed(
        blueprint.catalogue,
        blueprint.schemas.latest("observation"),
        scenario="mix",
        seed=seed,
        invalid_share=INVALID_SHARE,
        background=BACKGROUND,
        clock=lambda: first + next(ticks) * step,
    )
    checker = Pipeline(peer_spec(blueprint))
    mix = Mix(items=[])
    for record in itertools.islice(feed, count):
        mix.by_reporter[record.reporter] += 1
        if not record.valid:
            mix.items.append(Item(record.reporter, record.key, record.value))
            mix.invalid += 1
            continue
        if record.value[:1] == b"{":
            mix.json_encoded += 1
        decoded = with_alert_level(checker, record.value, mix)
        meta = None
        if keep_meta and decoded is not None:
            meta = Meta(
                observation_id=str(decoded["observation_id"]),
                entity=(str(decoded["indicator"]), str(decoded.get("station") or decoded["region"])),
                event_ms=_ms(decoded["event_time"]),
            )
        mix.items.append(Item(record.reporter, record.key, record.value, meta))
    mix.seconds_to_generate = time.perf_counter() - started
    return mix


def with_alert_level(checker: Pipeline, raw: bytes, mix: Mix) -> dict[str, Any] | None:
    """Count a record at or above its alert level; the decoded record (None if it is invalid)."""
    try:
        decoded = checker.decode(raw)
        rule = checker.check(decoded, "")
    except (Rejected, KeyError):
        return None
    bound = checker.bound(decoded, rule)
    if bound is not None and float(decoded["value"]) >= bound:
        mix.above_alert_level += 1
    return decoded


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)


def bulk_producer(ns: Namespace) -> Producer:
    """A producer tuned for bulk sending, as ``stream-app produce`` is."""
    return Producer(
        {
            **confluent_config(ns.settings),
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",  # as stream-app produce sends
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "log_level": 3,
        }
    )


def produce_mix(ns: Namespace, items: list[Item]) -> float:
    """Send ``items`` to their reporters' input topics; returns seconds until all were acknowledged."""
    producer = bulk_producer(ns)
    topic_of = {reporter: ns.blueprint.input_topic(reporter).name for reporter in {i.reporter for i in items}}
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.perf_counter()
    for item in items:
        while True:
            try:
                producer.produce(topic_of[item.reporter], item.value, item.key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0 or failures:
        raise RuntimeError(f"pre-producing failed: {len(failures)} failures, e.g. {failures[:1]}")
    return time.perf_counter() - started


# --- history -------------------------------------------------------------------------------------


@dataclass
class HistoryFile:
    reporter: str
    path: Path
    rows: int


def write_history(ns: Namespace, out_dir: Path, span: str) -> tuple[list[HistoryFile], float]:
    """``stream-app simulate --history SPAN --reporter R --out FILE`` for every reporter the history
    has; returns the files and the seconds it took."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    everything = out_dir / "history-all.jsonl"
    _stream_app(ns, ["simulate", "--history", span, "--out", str(everything)])
    # One file per reporter, as each reporter would send its own: split the one history file.
    files: dict[str, HistoryFile] = {}
    handles: dict[str, Any] = {}
    try:
        with everything.open("rb") as source:
            for line in source:
                reporter = json.loads(line)["reporter"]
                if reporter not in handles:
                    path = out_dir / f"history-{reporter.lower()}.jsonl"
                    handles[reporter] = path.open("wb")
                    files[reporter] = HistoryFile(reporter, path, 0)
                handles[reporter].write(line)
                files[reporter].rows += 1
    finally:
        for handle in handles.values():
            handle.close()
    everything.unlink()
    return sorted(files.values(), key=lambda f: -f.rows), time.perf_counter() - started


def produce_history(ns: Namespace, files: list[HistoryFile]) -> float:
    """``stream-app produce --bulk --reporter R FILE`` for each file, one after the other (history goes
    to the reporters' bulk topics); returns seconds."""
    started = time.perf_counter()
    for item in files:
        _stream_app(ns, ["produce", "--bulk", "--reporter", item.reporter, str(item.path)])
    return time.perf_counter() - started


def _stream_app(ns: Namespace, args: list[str]) -> None:
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "stream_app", *args],
        env=ns.env(STREAM_APP_LOG_LEVEL="warning"),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stream-app {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
