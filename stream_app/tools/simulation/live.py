"""Live feeds: the daily information groups, each to its reporter's topic, event times on the wall
clock, with scenarios that cross regulation thresholds on purpose.

MAE: VN_AQI at the air-quality stations, water levels at the hydrological stations, salinity (4‰
line in km, max ‰), forest-fire levels; MPS: traffic accidents and deaths; NSMO: electricity output
(GWh) and peak load (MW): each group goes to its indicators' owner. Scenarios: ``smog`` (Hà Nội's
VN_AQI through "Xấu" and "Rất xấu"), ``flood`` (the Red River at Long Biên through its alarm levels
BĐ I, II and III, from the catalogue), ``normal`` (nothing crosses), ``mix`` (smog and flood
together). A small share of records is wrong in typical ways (wrong unit, out of range, garbage
bytes, another ministry's indicator), so that dead-letter topics show something.

The generators are pure (they yield records); Kafka is only in :func:`run` and :func:`run_live`.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from stream_app.domain.catalogue import Catalogue, Indicator
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.simulation.society import DEATHS_PER_ACCIDENT
from stream_app.tools.simulation.world import World, observation
from stream_app.wire import codecs
from stream_app.wire.schemas import SchemaRegistry, SchemaVersion

SCENARIOS: Final = ("mix", "normal", "smog", "flood")
REPORTER: Final = "MAE"  # the demo's reporter (the feed of :func:`run`): it owns the scenarios' indicators
SMOG_STATION: Final = "HN-AQ-HOANKIEM"
FLOOD_STATION: Final = "HN-LONGBIEN"


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to send: the reporter (whose topic it goes to), key, bytes, and whether it is
    meant to be accepted."""

    reporter: str
    key: bytes
    value: bytes
    valid: bool


def smog_aqi(step: int, period: int = 60) -> float:
    """VN_AQI at Hoàn Kiếm over a smog episode: 70, up through Xấu (151) and Rất xấu (201) to 240."""
    phase = (step % period) / period
    return round(70 + 170 * math.sin(math.pi * phase) ** 2, 1)


def flood_level(step: int, alarms: Sequence[float], period: int = 80) -> float:
    """Water level over a flood crest: 1.5 m below the first of a station's ``alarms`` (BĐ I), up
    through all of them to 0.4 m above the last, and back."""
    low, high = alarms[0] - 1.5, alarms[-1] + 0.4
    phase = (step % period) / period
    return round(low + (high - low) * math.sin(math.pi * phase) ** 2, 2)


# Background readings in normal conditions: (low, high) at each station, below its alert level.
_NORMAL_WATER: Final = {
    "HN-LONGBIEN": (3.0, 6.0),
    "HN-SONTAY": (6.0, 9.0),
    "PT-TRUNGHA": (10.0, 13.0),
    "HN-THUONGCAT": (2.5, 5.0),
    "HN-BATHA": (2.5, 4.0),
    "AG-TANCHAU": (1.5, 3.0),
    "AG-CHAUDOC": (1.2, 2.5),
}
_NORMAL_AQI: Final = {
    "HN-AQ-HOANKIEM": (55.0, 95.0),
    "HCM-AQ-Q1": (45.0, 90.0),
    "HP-AQ-LECHAN": (45.0, 90.0),
    "DN-AQ-HAICHAU": (25.0, 60.0),
    "HUE-AQ-PHUHOI": (25.0, 60.0),
    "CT-AQ-NINHKIEU": (30.0, 75.0),
}
# The live groups and the indicators each sends; a group goes to its indicators' owner.
_GROUPS: Final = {
    "aqi": ("ENV.AQI",),
    "water": ("HYD.WATER_LEVEL",),
    "salinity": ("HYD.SALINITY_4PPT_KM", "HYD.SALINITY_MAX"),
    "fire": ("DIS.FOREST_FIRE",),
    "traffic": ("TRF.ACCIDENTS", "TRF.DEATHS"),
    "power": ("PWR.OUTPUT_GWH", "PWR.PEAK_MW"),
}

# A live reading: indicator, where (a station, a province, or None for the country), value.
_Reading = tuple[str, str | None, float]


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    reporter: str
    entities: tuple[str, ...]


class _Live:
    """The live feeds of a catalogue: groups, reporters, scenario stations and alarm levels, checked."""

    def __init__(self, catalogue: Catalogue) -> None:
        world = self.world = World(catalogue)
        world.check_stations("normal air quality (_NORMAL_AQI)", "air_quality", _NORMAL_AQI)
        world.check_stations("normal water levels (_NORMAL_WATER)", "hydrological", _NORMAL_WATER)
        aqi, water = world.indicator("ENV.AQI"), world.indicator("HYD.WATER_LEVEL")
        for indicator, normal in ((aqi, _NORMAL_AQI), (water, _NORMAL_WATER)):
            for station, (_low, high) in normal.items():
                alert = _alert_levels(catalogue, indicator, station)
                if alert and high >= alert[0]:
                    raise ConfigurationError(
                        f"simulator: normal {indicator.code} at {station} reaches {high}, at or above "
                        f"its alert level {alert[0]} (catalogue)"
                    )
        smog_alert = _alert_levels(catalogue, aqi, SMOG_STATION)
        smog = [smog_aqi(step) for step in range(60)]
        if not smog_alert or not min(smog) < smog_alert[0] <= max(smog):
            raise ConfigurationError(
                f"simulator: the smog scenario does not cross the {aqi.code} alert level at {SMOG_STATION}"
            )
        self.alarms = _alert_levels(catalogue, water, FLOOD_STATION)
        if not self.alarms:
            raise ConfigurationError(f"simulator: {FLOOD_STATION} has no {water.code} alarm levels to flood")
        if not aqi.owner == water.owner == REPORTER:
            raise ConfigurationError(
                f"simulator: the scenarios' indicators must be owned by the demo's reporter {REPORTER}"
            )
        salinity = tuple(code for code, s in catalogue.stations.items() if s.kind == "salinity")
        entities = {
            "aqi": tuple(_NORMAL_AQI),
            "water": tuple(_NORMAL_WATER),
            "salinity": salinity,
            "fire": world.current,
            "traffic": world.current,
            "power": (world.national,),
        }
        self.groups = tuple(
            _Group(name, _owner(world, codes), entities[name]) for name, codes in _GROUPS.items()
        )
        self.reporters = tuple(dict.fromkeys(group.reporter for group in self.groups))
        live_codes = [code for codes in _GROUPS.values() for code in codes]
        self.foreign = {reporter: _foreign(catalogue, reporter, live_codes) for reporter in self.reporters}


def _alert_levels(catalogue: Catalogue, indicator: Indicator, station: str) -> tuple[float, ...]:
    """The lower bounds of the levels that raise an alert for ``indicator`` at ``station``."""
    levels = catalogue.levels_for(indicator, station)
    return tuple(level.lower for level in levels[indicator.alert_from_level :])


def _owner(world: World, codes: Sequence[str]) -> str:
    owners = {world.indicator(code).owner for code in codes}
    if len(owners) != 1:
        raise ConfigurationError(f"simulator: live group {list(codes)} has several owners {sorted(owners)}")
    return owners.pop()


def _foreign(catalogue: Catalogue, reporter: str, preferred: Sequence[str]) -> tuple[str, str]:
    """(code, unit) of an indicator ``reporter`` may not send: a live one if there is one."""
    for code in (*preferred, *catalogue.indicators):
        indicator = catalogue.indicators[code]
        if reporter not in indicator.reporters:
            return code, indicator.unit
    raise ConfigurationError(f"simulator: {reporter} may report every indicator; none to send wrongly")


def live_reporters(catalogue: Catalogue) -> tuple[str, ...]:
    """The reporters that have a live feed."""
    return _Live(catalogue).reporters


def _live_value(group: str, entity: str, rng: random.Random) -> list[_Reading]:
    """The readings of one background report in normal conditions."""
    if group == "aqi":
        low, high = _NORMAL_AQI[entity]
        return [("ENV.AQI", entity, round(rng.uniform(low, high), 1))]
    if group == "water":
        low, high = _NORMAL_WATER[entity]
        return [("HYD.WATER_LEVEL", entity, round(rng.uniform(low, high), 2))]
    if group == "salinity":
        return [
            ("HYD.SALINITY_4PPT_KM", entity, round(rng.uniform(20.0, 45.0), 1)),
            ("HYD.SALINITY_MAX", entity, round(rng.uniform(5.0, 15.0), 1)),
        ]
    if group == "fire":
        return [("DIS.FOREST_FIRE", entity, float(rng.choice((1, 1, 2, 2, 3))))]
    if group == "traffic":  # crashes reported since the province's previous report
        accidents = rng.choice((0, 1, 1, 1, 2, 2, 3))
        deaths = sum(rng.random() < DEATHS_PER_ACCIDENT for _ in range(accidents))
        return [("TRF.ACCIDENTS", entity, float(accidents)), ("TRF.DEATHS", entity, float(deaths))]
    # power: today's output so far extrapolated to the day, and the day's peak so far
    gwh = round(rng.uniform(850.0, 890.0), 1)
    return [
        ("PWR.OUTPUT_GWH", None, gwh),
        ("PWR.PEAK_MW", None, float(round(gwh * 1000 / 24 * rng.uniform(1.15, 1.25)))),
    ]


def _record(world: World, reporter: str, reading: _Reading, now_ms: int, seq: int) -> dict[str, Any]:
    code, where, value = reading
    indicator = world.indicator(code)
    region, station = place = world.place(indicator, where, legacy=False)
    return observation(
        indicator,
        observation_id=f"{reporter}-{station or region}-{code}-{now_ms}-{seq}",
        reporter=reporter,
        place=place,
        value=value,
        event_ms=now_ms,
        report_ms=now_ms,
    )


def live_feed(
    catalogue: Catalogue,
    schema: SchemaVersion,
    *,
    scenario: str = "mix",
    reporters: Collection[str] | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
    background: int = 4,
    clock: Callable[[], float] = time.time,
) -> Iterator[SimRecord]:
    """An endless live feed; each round: the scenario's readings, then ``background`` normal ones
    (random feeds of the wanted reporters).

    Event times are ``clock()`` (the wall clock) when each record is made. A share ``invalid_share``
    of records is spoiled on purpose (wrong unit, out of range, garbage bytes, another ministry's
    indicator); a tenth of the good ones are JSON rather than Avro, as some reporters send. Raises
    ``ConfigurationError`` at once for an unknown scenario, reporters without a live feed, or
    simulator tables that disagree with ``catalogue``.
    """
    if scenario not in SCENARIOS:
        raise ConfigurationError(f"unknown scenario {scenario!r} ({', '.join(SCENARIOS)})")
    live = _Live(catalogue)
    wanted = frozenset(live.reporters if reporters is None else (r.upper() for r in reporters))
    smog = scenario in {"smog", "mix"} and REPORTER in wanted
    flood = scenario in {"flood", "mix"} and REPORTER in wanted
    groups = []
    for group in live.groups:
        if group.reporter not in wanted:
            continue
        kept = tuple(
            e
            for e in group.entities
            if not (smog and e == SMOG_STATION) and not (flood and e == FLOOD_STATION)
        )
        groups.append((group.reporter, group.name, kept))
    if not groups and not (smog or flood):
        raise ConfigurationError(
            f"no live feed for reporter(s) {', '.join(sorted(wanted))} ({', '.join(live.reporters)})"
        )

    def feed() -> Iterator[SimRecord]:
        rng = random.Random(seed)
        step = seq = 0
        while True:
            readings: list[tuple[str, _Reading]] = []
            if smog:
                readings.append((REPORTER, ("ENV.AQI", SMOG_STATION, smog_aqi(step))))
            if flood:
                readings.append(
                    (REPORTER, ("HYD.WATER_LEVEL", FLOOD_STATION, flood_level(step, live.alarms)))
                )
            for _ in range(background if groups else 0):
                reporter, group, entities = rng.choice(groups)
                readings.extend((reporter, r) for r in _live_value(group, rng.choice(entities), rng))
            for reporter, reading in readings:
                row = _record(live.world, reporter, reading, int(clock() * 1000), seq)
                seq += 1
                key = (row["station"] or row["region"]).encode()
                if rng.random() < invalid_share:
                    yield _spoil(live, row, key, rng, schema)
                    continue
                # a few reporters send JSON instead of Avro
                value = json.dumps(row).encode() if rng.random() < 0.1 else codecs.encode(schema, row)
                yield SimRecord(reporter, key, value, True)
            step += 1

    return feed()


def _spoil(
    live: _Live, row: dict[str, Any], key: bytes, rng: random.Random, schema: SchemaVersion
) -> SimRecord:
    kind = rng.choice(["unit", "range", "garbage", "indicator"])
    reporter = row["reporter"]
    if kind == "garbage":
        return SimRecord(reporter, key, b"\xde\xad\xbe\xef not an observation", False)
    bad = dict(row)
    if kind == "unit":
        bad["unit"] = "ppm"
    elif kind == "range":
        bad["value"] = live.world.indicator(row["indicator"]).min_value - 999.0
    else:
        bad["indicator"], bad["unit"] = live.foreign[reporter]
    return SimRecord(reporter, key, codecs.encode(schema, bad), False)


def feed_topic(settings: Settings, reporter: str) -> str:
    """A reporter's input topic, namespaced."""
    return settings.topic(f"reporter.{reporter.lower()}.observations")


def _pump(
    settings: Settings,
    records: Iterator[SimRecord],
    topic_of: Callable[[str], str],
    *,
    rate: float,
    duration: float | None,
    count: int | None,
    stop: threading.Event | None = None,
) -> Counter[tuple[str, bool]]:
    """Send ``records`` at ``rate`` a second, until ``duration``, ``count`` or ``stop``; counts by
    (reporter, valid)."""
    producer = Producer(
        {
            **confluent_config(settings),
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
            "log_level": 3,
        }
    )
    interval = 1.0 / rate if rate > 0 else 0.0
    counts: Counter[tuple[str, bool]] = Counter()
    sent = 0
    started = next_at = time.monotonic()
    try:
        for record in records:
            if count is not None and sent >= count:
                break
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if stop is not None and stop.is_set():
                break
            while True:
                try:
                    producer.produce(topic_of(record.reporter), key=record.key, value=record.value)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
            counts[(record.reporter, record.valid)] += 1
            if interval:
                next_at += interval
                if next_at > now:
                    time.sleep(next_at - now)
    finally:
        producer.flush(30)
    return counts


def run(
    settings: Settings,
    catalogue: Catalogue,
    schemas: SchemaRegistry,
    topic: str,
    *,
    rate: float,
    duration: float | None,
    count: int | None = None,
    seed: int = 7,
) -> tuple[int, int]:
    """Send the demo's feed (:data:`REPORTER`: smog at Hoàn Kiếm, flood at Long Biên, background
    stations) to ``topic`` at ``rate`` records/s for ``duration`` seconds or ``count`` records.

    Returns (sent, meant_to_be_rejected).
    """
    records = live_feed(
        catalogue,
        schemas.latest("observation"),
        scenario="mix",
        reporters=[REPORTER],
        seed=seed,
        background=2,
    )
    counts = _pump(settings, records, lambda _r: topic, rate=rate, duration=duration, count=count)
    return sum(counts.values()), sum(n for (_r, valid), n in counts.items() if not valid)


def run_live(
    settings: Settings,
    catalogue: Catalogue,
    schemas: SchemaRegistry,
    *,
    reporters: Collection[str],
    scenario: str = "mix",
    rate: float,
    duration: float | None,
    count: int | None = None,
    seed: int = 7,
    invalid_share: float = 0.03,
    stop: threading.Event | None = None,
) -> dict[str, tuple[int, int]]:
    """Send the live feeds of ``reporters``, each to its own topic, until ``duration``, ``count`` or
    ``stop``; (sent, invalid) per reporter."""
    records = live_feed(
        catalogue,
        schemas.latest("observation"),
        scenario=scenario,
        reporters=reporters,
        seed=seed,
        invalid_share=invalid_share,
    )
    counts = _pump(
        settings,
        records,
        lambda r: feed_topic(settings, r),
        rate=rate,
        duration=duration,
        count=count,
        stop=stop,
    )
    return {
        reporter: (counts[(reporter, True)] + counts[(reporter, False)], counts[(reporter, False)])
        for reporter in sorted({r for r, _v in counts})
    }


def existing_topics(settings: Settings) -> set[str]:
    """The topic names the cluster has."""
    admin = AdminClient({**confluent_config(settings), "log_level": 3})
    try:
        return set(admin.list_topics(timeout=settings.startup_timeout_s).topics)
    except Exception as exc:  # KafkaException and transport errors mean the same here
        raise ServiceUnreachableError(f"Kafka did not answer at {settings.kafka_bootstrap}: {exc}") from exc
