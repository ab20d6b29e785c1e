"""A seeded feed with duplicates, corrections and late records, and its ground truth computed here,
independently of the processor: periods from the dates (UTC+7, Decree 09 cut-off on the 15th),
pre-2025 provinces mapped from ``catalogue/regions.toml`` read as plain TOML, sums as exact decimals.

Used by ``test_aggregates_chaos.py``; the generator may use the project's code (it only writes
input), the ground truth does not.
"""

from __future__ import annotations

import decimal
import math
import random
import tomllib
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

VIETNAM = timezone(timedelta(hours=7))
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MERGER = datetime(2025, 7, 1, tzinfo=VIETNAM)
EXACT = decimal.Context(prec=60)
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Feed:
    """One indicator's feed in the generated stream."""

    indicator: str
    reporter: str
    unit: str
    frequency: str  # hourly, daily, monthly
    calendar: str  # decree09, calendar_month
    aggregation: str  # sum, mean, weighted_mean, max, last
    places: tuple[tuple[str, str | None], ...]  # (region, station) before the merger (legacy codes)
    places_after: tuple[tuple[str, str | None], ...]  # and after it
    start: date
    end: date  # inclusive
    low: float
    high: float
    decimals: int
    sources: tuple[str, ...] = ()  # breakdown "source" values: one series each


class _Span(TypedDict):
    """The days a feed runs (its ``start`` and ``end``), given to ``Feed`` as keyword arguments."""

    start: date
    end: date


class _HourlySpan(_Span):
    frequency: str


class _Places(TypedDict):
    """Where a feed reports, before and after the merger, given to ``Feed`` as keyword arguments."""

    places: tuple[tuple[str, str | None], ...]
    places_after: tuple[tuple[str, str | None], ...]


# ``period_label(indicator, event_ms)``: the period label of a monthly record (the project's calendar)
PeriodLabel = Callable[[str, int], str]


@dataclass(frozen=True)
class Sent:
    """One record as produced, and the (indicator, region, station) it is keyed by."""

    record: dict[str, Any]
    key: bytes
    topic_reporter: str


@dataclass
class Stream:
    """The generated records in arrival order, and what the ground truth needs of the world."""

    sent: list[Sent] = field(default_factory=list)
    feeds: dict[str, Feed] = field(default_factory=dict)


def _regions() -> tuple[dict[str, str], list[str]]:
    """Legacy code -> today's unit, and today's units, from the catalogue file itself."""
    table = tomllib.loads((REPO / "catalogue" / "regions.toml").read_text(encoding="utf-8"))
    legacy = {r["code"]: r["successor"] for r in table["region"] if r["kind"] == "legacy"}
    current = sorted(r["code"] for r in table["region"] if r["kind"] == "current")
    return legacy, current


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def feeds(hourly_from: date = date(2025, 3, 1)) -> list[Feed]:
    """The feeds; ``hourly_from``: when the hourly stations begin (earlier: a longer stream)."""
    legacy, current = _regions()
    aq = (
        ("01", "HN-AQ-HOANKIEM"),
        ("79", "HCM-AQ-Q1"),
        ("31", "HP-AQ-LECHAN"),
        ("48", "DN-AQ-HAICHAU"),
        ("46", "HUE-AQ-PHUHOI"),
        ("92", "CT-AQ-NINHKIEU"),
    )
    hydro = (("01", "HN-LONGBIEN"), ("01", "HN-SONTAY"), ("25", "PT-TRUNGHA"), ("91", "AG-TANCHAU"))
    provinces_before = tuple((code, None) for code in sorted(legacy))
    provinces_after = tuple((code, None) for code in current)
    national = (("VN", None),)
    hourly: _HourlySpan = {"start": hourly_from, "end": date(2025, 9, 30), "frequency": "hourly"}
    long: _Span = {"start": date(2024, 7, 1), "end": date(2025, 9, 30)}
    provinces: _Places = {"places": provinces_before, "places_after": provinces_after}
    return [
        Feed("ENV.AQI", "MAE", "index", calendar="calendar_month", aggregation="max", places=aq,
             places_after=aq, low=5, high=320, decimals=0, **hourly),
        Feed("HYD.WATER_LEVEL", "MAE", "m", calendar="calendar_month", aggregation="max", places=hydro,
             places_after=hydro, low=-1, high=14, decimals=2, **hourly),
        Feed("DIS.LANDSLIDE_SITES", "MAE", "sites", frequency="daily", calendar="decree09", aggregation="sum",
             low=0, high=6, decimals=0, **provinces, **long),
        Feed("TRF.DEATHS", "MPS", "persons", frequency="daily", calendar="decree09", aggregation="sum",
             start=date(2025, 3, 1), end=date(2025, 9, 30), low=0, high=9, decimals=0, **provinces),
        Feed("PWR.OUTPUT_GWH", "NSMO", "GWh", frequency="daily", calendar="calendar_month",
             aggregation="sum", places=national, places_after=national, low=600, high=1100, decimals=1,
             **long),
        Feed("PWR.SOURCE_SHARE", "NSMO", "%", frequency="daily", calendar="calendar_month",
             aggregation="weighted_mean", places=national, places_after=national, low=0, high=60, decimals=2,
             sources=("hydro", "coal", "gas", "solar", "wind"), **long),
        Feed("FIN.CPI", "MOF", "%", frequency="monthly", calendar="calendar_month",
             aggregation="weighted_mean", low=95, high=110, decimals=2, **provinces, **long),
        Feed("SSI.UNEMPLOYMENT", "VSS", "persons", frequency="monthly", calendar="decree09",
             aggregation="sum", low=100, high=90000, decimals=0, **provinces, **long),
    ]  # fmt: skip


def _moments(feed: Feed) -> list[datetime]:
    """Event times of one place's feed, local time."""
    out: list[datetime] = []
    day = feed.start
    while day <= feed.end:
        if feed.frequency == "hourly":
            out.extend(datetime(day.year, day.month, day.day, h, 7, tzinfo=VIETNAM) for h in range(24))
        elif feed.frequency == "daily":
            out.append(datetime(day.year, day.month, day.day, 18, 0, tzinfo=VIETNAM))
        elif day.day == 10:  # monthly: one value per period, inside it under both calendars
            out.append(datetime(day.year, day.month, day.day, 9, 0, tzinfo=VIETNAM))
        day += timedelta(days=1)
    return out


def generate(
    seed: int,
    period_label: PeriodLabel,
    hourly_from: date = date(2025, 3, 1),
    only: Collection[str] | None = None,
) -> Stream:
    """The stream: every feed's values, then ~5 % duplicates, ~5 % corrections (some before the
    original, some moving the event time a few hours), ~3 % arriving late (at the very end), the rest
    nearly in order. ``period_label(indicator, event_ms)`` gives monthly records their period label
    (the generator may use the project's calendar: it only writes input)."""
    rng = random.Random(seed)
    stream = Stream()
    base: list[dict[str, Any]] = []
    for feed in feeds(hourly_from):
        if only is not None and feed.indicator not in only:
            continue
        stream.feeds[feed.indicator] = feed
        for moment in _moments(feed):
            places = feed.places if moment < MERGER else feed.places_after
            for region, station in places:
                for source in feed.sources or (None,):
                    value = round(rng.uniform(feed.low, feed.high), feed.decimals)
                    record = _record(
                        feed,
                        rng,
                        region=region,
                        station=station,
                        source=source,
                        moment=moment,
                        value=value,
                        serial=len(base),
                    )
                    base.append(record | {"period": _label(feed, record, period_label)})
    rng.shuffle(base)  # nearly in order: sort by time with a little jitter, per entity key below
    base.sort(key=lambda r: r["event_time"] + rng.randint(0, 6) * HOUR_MS)
    arrivals = _arrivals(base, rng, stream, period_label)
    for record in arrivals:
        feed = stream.feeds[record["indicator"]]
        key = f"{record['indicator']}|{record['region']}|{record['station'] or '-'}".encode()
        stream.sent.append(Sent(record, key, feed.reporter))
    return stream


def _arrivals(
    base: list[dict[str, Any]], rng: random.Random, stream: Stream, period_label: PeriodLabel
) -> list[dict[str, Any]]:
    """The order records arrive in, with duplicates, corrections and late ones."""
    arrivals: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    for record in base:
        draw = rng.random()
        if draw < 0.03:
            late.append(record)
            continue
        if draw < 0.05:  # a correction sent before the original: the original is then stale
            arrivals.extend([_corrected(record, rng, stream, period_label), record])
            continue
        arrivals.append(record)
        if draw < 0.08:
            arrivals.append(_corrected(record, rng, stream, period_label))
        elif draw < 0.13:
            arrivals.append(dict(record))  # a duplicate
    arrivals.extend(late)
    for index in rng.sample(range(len(arrivals)), len(arrivals) // 100):  # some corrections of corrections
        record = arrivals[index]
        if record["revision"] >= 1:
            arrivals.append(_corrected(record, rng, stream, period_label))
    return arrivals


def _record(
    feed: Feed,
    rng: random.Random,
    *,
    region: str,
    station: str | None,
    source: str | None,
    moment: datetime,
    value: float,
    serial: int,
) -> dict[str, Any]:
    event = _ms(moment)
    quality = rng.choices(["FINAL", "PROVISIONAL", "TEST"], [90, 7, 3])[0]
    return {
        "observation_id": f"{feed.indicator}-{serial}",
        "revision": 0,
        "reporter": feed.reporter,
        "indicator": feed.indicator,
        "region": region,
        "station": station,
        "value": value,
        "unit": feed.unit,
        "event_time": event,
        "report_time": event + HOUR_MS,
        "quality": quality,
        "period": None,
        "breakdowns": {"source": source} if source else {},
    }


def _label(feed: Feed, record: dict[str, Any], period_label: PeriodLabel) -> str | None:
    """Monthly records name their period; the others may leave it to the event time."""
    return period_label(feed.indicator, record["event_time"]) if feed.frequency == "monthly" else None


def _corrected(
    record: dict[str, Any], rng: random.Random, stream: Stream, period_label: PeriodLabel
) -> dict[str, Any]:
    feed = stream.feeds[record["indicator"]]
    fixed = dict(record)
    fixed["revision"] = record["revision"] + 1
    fixed["value"] = round(rng.uniform(feed.low, feed.high), feed.decimals)
    fixed["quality"] = rng.choice(["FINAL", "FINAL", "PROVISIONAL"])
    if feed.frequency != "monthly" and rng.random() < 0.4:
        # the reporter also corrects the time: possibly into another day or period; before the
        # merger a legacy code stays valid only before 2025-07-01, so do not cross it
        moved = record["event_time"] + rng.choice([-1, 1]) * rng.randint(1, 30) * HOUR_MS
        if (moved < _ms(MERGER)) == (record["event_time"] < _ms(MERGER)) and moved >= _ms(
            datetime(feed.start.year, feed.start.month, feed.start.day, tzinfo=VIETNAM)
        ):
            fixed["event_time"] = moved
    return fixed


# ---------------------------------------------------------------------------------- ground truth


def local_day(event_ms: int) -> date:
    return datetime.fromtimestamp(event_ms / 1000, tz=VIETNAM).date()


def labels(event_ms: int, frequency: str, calendar: str) -> list[str]:
    """The periods a value counts in: its own and every longer one (hourly: from the day)."""
    day = local_day(event_ms)
    year, month = day.year, day.month
    if calendar == "decree09" and day.day >= 15:  # Decree 09: a month runs from the 15th to the 14th
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    ladder = [
        day.isoformat(),
        f"{year:04d}-{month:02d}",
        f"{year:04d}-Q{(month - 1) // 3 + 1}",
        f"{year:04d}-H{1 if month <= 6 else 2}",
        f"{year:04d}",
    ]
    return ladder if frequency in ("hourly", "daily") else ladder[1:]


@dataclass
class Truth:
    """An aggregate computed from the final observations."""

    count: int = 0
    total: Decimal = Decimal(0)
    low: float = math.inf
    high: float = -math.inf
    last: tuple[int, str, float] = (-1, "", 0.0)
    qualities: dict[str, int] = field(default_factory=lambda: {"FINAL": 0, "PROVISIONAL": 0, "TEST": 0})

    def add(self, value: float, event_time: int, observation_id: str, quality: str) -> None:
        self.count += 1
        self.total = EXACT.add(self.total, Decimal(repr(value)))
        self.low, self.high = min(self.low, value), max(self.high, value)
        self.last = max(self.last, (event_time, observation_id, value))
        self.qualities[quality] += 1

    @property
    def mean(self) -> float:
        return float(EXACT.divide(self.total, self.count))

    def value(self, aggregation: str) -> float:
        if aggregation == "sum":
            return float(self.total)
        if aggregation == "max":
            return self.high
        if aggregation == "last":
            return self.last[2]
        return self.mean


@dataclass
class Expected:
    """What the processor must end with."""

    outcomes: dict[str, int] = field(default_factory=lambda: {"applied": 0, "duplicate": 0, "stale": 0})
    stale: set[tuple[str, int]] = field(default_factory=set)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # observation id -> record
    entities: dict[str, str] = field(default_factory=dict)  # observation id -> entity key
    periods: dict[tuple[str, str, str], Truth] = field(default_factory=dict)  # (entity, series, label)
    rollups: dict[tuple[str, str, str, str], dict[str, Truth]] = field(default_factory=dict)
    days: dict[tuple[str, str, date], Truth] = field(default_factory=dict)


def expected(stream: Stream) -> Expected:
    """Replay the arrivals as the contract says: per observation id the highest revision wins; a
    revision applied before (even if corrected since) is a duplicate; a lower revision never applied
    is stale (dead-lettered)."""
    legacy, _ = _regions()
    out = Expected()
    best: dict[str, int] = {}
    applied: set[tuple[str, int]] = set()
    for sent in stream.sent:
        record = sent.record
        oid, revision = record["observation_id"], record["revision"]
        if oid not in best or revision > best[oid]:
            best[oid] = revision
            applied.add((oid, revision))
            out.final[oid] = record
            out.outcomes["applied"] += 1
        elif (oid, revision) in applied:
            out.outcomes["duplicate"] += 1
        else:
            out.outcomes["stale"] += 1
            out.stale.add((oid, revision))
    periods: dict[tuple[str, str, str], Truth] = defaultdict(Truth)
    days: dict[tuple[str, str, date], Truth] = defaultdict(Truth)
    for oid, record in out.final.items():
        feed = stream.feeds[record["indicator"]]
        region = legacy.get(record["region"], record["region"])
        entity = f"{record['indicator']}|{region}|{record['station'] or '-'}"
        out.entities[oid] = entity
        series = f"source={record['breakdowns']['source']}" if record["breakdowns"] else ""
        args = (record["value"], record["event_time"], oid, record["quality"])
        for label in labels(record["event_time"], feed.frequency, feed.calendar):
            periods[(entity, series, label)].add(*args)
        days[(entity, series, local_day(record["event_time"]))].add(*args)
    out.periods, out.days = dict(periods), dict(days)
    rollups: dict[tuple[str, str, str, str], dict[str, Truth]] = defaultdict(dict)
    for (entity, series, label), truth in out.periods.items():
        indicator, region, station = entity.split("|")
        feed = stream.feeds[indicator]
        if feed.aggregation == "last" or region == "VN":
            continue
        targets = [region, "VN"] if station != "-" else ["VN"]
        for target in targets:
            rollups[(indicator, target, series, label)][entity] = truth
    out.rollups = dict(rollups)
    return out


def rollup_value(aggregation: str, sources: dict[str, Truth]) -> float:
    """A roll-up's value: sum of sums, max of maxima, or the mean of the units' means."""
    ordered = [sources[name] for name in sorted(sources)]
    if aggregation == "sum":
        return float(sum((t.total for t in ordered), Decimal(0)))
    if aggregation == "max":
        return max(t.high for t in ordered)
    return math.fsum(t.mean for t in ordered) / len(ordered)


def newest_event(stream: Stream, exp: Expected) -> dict[str, int]:
    """Per entity, the newest event time among everything applied (retention counts from it)."""
    newest: dict[str, int] = {}
    best: dict[str, int] = {}
    legacy, _ = _regions()
    for sent in stream.sent:
        record = sent.record
        oid, revision = record["observation_id"], record["revision"]
        if oid in best and revision <= best[oid]:
            continue
        best[oid] = revision
        region = legacy.get(record["region"], record["region"])
        entity = f"{record['indicator']}|{region}|{record['station'] or '-'}"
        newest[entity] = max(newest.get(entity, -1), record["event_time"])
    return newest


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
