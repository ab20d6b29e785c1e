"""Effectively-once aggregates under SIGKILL: ≥ 100,000 observations with duplicates, corrections and
late records; the worker is killed mid-stream at least three times and restarted. Afterwards every
period aggregate, daily aggregate and roll-up in Redis, and the final consolidated record of every
key, equal the ground truth computed independently (``ground_truth.py``), exactly.

``make test`` runs it on a shorter stream (every feed, the hourly stations from October 2025 only:
≥ 45,000 observations, the same three kills); ``make chaos`` (``CHAOS_LONG=1``) on the whole one.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.config.blueprint import Blueprint
from stream_app.domain.catalogue import load_catalogue
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.wire import codecs

from . import ground_truth as gt
from .support import decode_public, group_lag, messages, produce, redis_hash, wait_until

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("CHAOS_SEED", "20251129"))  # `make chaos` runs more seeds
LONG = os.environ.get("CHAOS_LONG") == "1"  # `make chaos`: the whole stream
KILLS_AT = (0.2, 0.45, 0.7)  # share of the distinct observations applied when each kill happens
# make test: every feed, the hourly stations from October (the whole stream: from March)
HOURLY_FROM, LEAST = (date(2025, 3, 1), 100_000) if LONG else (date(2025, 10, 1), 45_000)


def _period_label(settings: Settings) -> Callable[[str, int], str]:
    catalogue = load_catalogue(settings.catalogue_dir)

    def label(indicator: str, event_ms: int) -> str:
        return catalogue.indicators[indicator].period_of(event_ms).label

    return label


def _applied(client: redis.Redis, settings: Settings, entities: list[str]) -> int:
    """Distinct observation ids applied so far, over every entity's seen hash."""
    with client.pipeline(transaction=False) as pipe:
        for entity in entities:
            pipe.hlen(f"{settings.redis_key_prefix}:{{{entity}}}:seen")
        return sum(pipe.execute())


def _final_consolidated(settings: Settings, blueprint: Blueprint) -> dict[str, dict[str, Any] | None]:
    """The last record of every key of the consolidated topic (a compacted topic's meaning)."""
    topic = blueprint.topic_by_role("consolidated").name
    admin = AdminClient({**confluent_config(settings)})
    spec = next(s for s in blueprint.topics if s.name == topic)
    probe = Consumer({**confluent_config(settings), "group.id": "probe"})
    ends = {
        p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(spec.partitions)
    }
    probe.close()
    del admin
    total = sum(ends.values())
    seen: dict[int, int] = defaultdict(int)
    latest: dict[str, dict[str, Any] | None] = {}
    count = 0

    def done() -> bool:
        return count >= total

    for message in messages(settings, topic, done, timeout=120):
        count += 1
        seen[message.partition()] += 1
        key = message.key().decode()
        value = message.value()
        latest[key] = None if value is None else decode_public(blueprint, "consolidated", value)
    assert count >= total, f"read {count} of {total} consolidated records"
    return latest


@pytest.mark.timeout(900)  # ~4 minutes on 2 cores shared with Kafka and Redis (long)
def test_aggregates_are_exact_after_repeated_sigkill(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    settings = settings.model_copy(update={"batch_max": 300})
    stream = gt.generate(SEED, _period_label(settings), hourly_from=HOURLY_FROM)
    exp = gt.expected(stream)
    entities = sorted(set(exp.entities.values()))
    distinct = len(exp.final)
    assert len(stream.sent) >= LEAST, len(stream.sent)
    assert min(exp.outcomes.values()) > 500, exp.outcomes  # duplicates and stale corrections, plenty

    schema = blueprint.schemas.latest("observation")
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for sent in stream.sent:
        by_topic[blueprint.input_topic(sent.topic_reporter).name].append(
            (sent.key, codecs.encode(schema, sent.record))
        )
    for topic, records in by_topic.items():
        produce(settings, topic, records)

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    worker = start_worker(settings)
    kills = []
    for share in KILLS_AT:
        wait_until(
            lambda s=share: _applied(client, settings, entities) >= s * distinct, 240, f"{share:.0%} applied"
        )
        before = _applied(client, settings, entities)
        worker.kill()  # SIGKILL: no commit, no goodbye to the group
        after = _applied(client, settings, entities)
        kills.append((before, after))
        assert 0 < after < distinct, f"kill at {after}/{distinct} applied was not mid-stream"
        worker = start_worker(settings)
    assert len(kills) >= 3
    assert kills[-1][1] > kills[0][1], "processing advanced between kills"

    internal = [blueprint.topic_by_role(r).name for r in ("repartition", "rollup")]
    inputs = sorted(by_topic)
    wait_until(lambda: _applied(client, settings, entities) == distinct, 300, "every observation applied")
    wait_until(
        lambda: group_lag(settings, blueprint, inputs + internal) == 0, 120, "the group's lag to reach 0"
    )

    rss = _rss_kib(worker.proc.pid)
    _check_redis(client, settings, stream, exp)
    _check_consolidated(_final_consolidated(settings, blueprint), stream, exp)
    _check_dead_letters(settings, blueprint, stream, exp)
    _report(client, settings, stream, exp, rss)


def _rss_kib(pid: int) -> dict[str, int]:
    """The worker's resident memory now and at its peak (kB), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _report(
    client: redis.Redis, settings: Settings, stream: gt.Stream, exp: gt.Expected, rss: dict[str, int]
) -> None:
    """Redis memory per entity-year and per observation kept, and the worker's RSS, printed and
    written to .local/reports/aggregates_chaos.json (figures for the notes, not assertions)."""
    prefix = settings.redis_key_prefix
    per_indicator: dict[str, dict[str, float]] = {}
    for indicator, feed in stream.feeds.items():
        entities = sorted({e for e in exp.entities.values() if e.startswith(indicator + "|")})
        if not entities:  # a feed with nothing in the stream's window
            continue
        total = observations = 0
        for entity in entities:
            for part in ("state", "periods", "periods-index", "seen", "seen-index"):
                total += client.memory_usage(f"{prefix}:{{{entity}}}:{part}", samples=0) or 0
            observations += client.hlen(f"{prefix}:{{{entity}}}:seen")
        years = ((feed.end - feed.start).days + 1) / 365.25
        per_indicator[indicator] = {
            "entities": len(entities),
            "observations_kept": observations,
            "bytes_per_entity_year": round(total / len(entities) / years),
            "bytes_per_observation": round(total / max(observations, 1), 1),
        }
    report = {"worker_rss_kib": rss, "redis": per_indicator, "records_sent": len(stream.sent)}
    out = Path(__file__).resolve().parents[2] / ".local" / "reports" / "aggregates_chaos.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))


def _agg_fields(text: bytes) -> tuple[int, Decimal, float, float, int, str, float, tuple[int, int, int]]:
    parts = text.decode().split(",", 10)
    return (
        int(parts[0]),
        Decimal(parts[1]),
        float(parts[2]),
        float(parts[3]),
        int(parts[4]),
        parts[10],
        float(parts[5]),
        (int(parts[6]), int(parts[7]), int(parts[8])),
    )


def _truth_fields(t: gt.Truth) -> tuple[int, Decimal, float, float, int, str, float, tuple[int, int, int]]:
    q = t.qualities
    return (
        t.count,
        t.total,
        t.low,
        t.high,
        t.last[0],
        t.last[1],
        t.last[2],
        (q["FINAL"], q["PROVISIONAL"], q["TEST"]),
    )


def _check_redis(client: redis.Redis, settings: Settings, stream: gt.Stream, exp: gt.Expected) -> None:
    prefix = settings.redis_key_prefix
    by_entity: dict[str, dict[str, gt.Truth]] = defaultdict(dict)
    for (entity, series, label), truth in exp.periods.items():
        by_entity[entity][f"{series}|{label}"] = truth
    newest = gt.newest_event(stream, exp)
    mismatches = []
    for entity, wanted in sorted(by_entity.items()):
        stored = redis_hash(client, f"{prefix}:{{{entity}}}:periods")
        got = {k.decode(): _agg_fields(v) for k, v in stored.items()}
        want = {k: _truth_fields(t) for k, t in wanted.items()}
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            mismatches.append((entity, diff[:3], [(got.get(k), want.get(k)) for k in diff[:1]]))
        # daily aggregates kept in the state hash: the 32 days up to the newest value
        state = redis_hash(client, f"{prefix}:{{{entity}}}:state")
        newest_day = gt.local_day(newest[entity]).toordinal()
        got_days = {k.decode(): _agg_fields(v) for k, v in state.items() if k.startswith(b"d:")}
        want_days = {
            f"d:{series}:{day.toordinal()}": _truth_fields(t)
            for (e, series, day), t in exp.days.items()
            if e == entity and day.toordinal() >= newest_day - 32
        }
        if got_days != want_days:
            diff = sorted(k for k in set(got_days) | set(want_days) if got_days.get(k) != want_days.get(k))
            mismatches.append((entity, diff[:3], [(got_days.get(k), want_days.get(k)) for k in diff[:1]]))
    assert not mismatches, f"{len(mismatches)} entities differ from the ground truth: {mismatches[:5]}"
    # roll-ups: each source's newest contribution, equal to its entity's period
    wrong = []
    for (indicator, target, series, label), sources in exp.rollups.items():
        stored = redis_hash(client, f"{prefix}:{{rollup|{indicator}|{target}}}:{series}|{label}")
        got = {k.decode(): _agg_fields(v.split(b";", 1)[1]) for k, v in stored.items() if v.split(b";", 1)[1]}
        want = {name: _truth_fields(t) for name, t in sources.items()}
        if got != want:
            wrong.append((indicator, target, label))
    assert not wrong, f"{len(wrong)} roll-ups differ: {wrong[:5]}"


def _check_consolidated(
    latest: dict[str, dict[str, Any] | None], stream: gt.Stream, exp: gt.Expected
) -> None:
    wrong: list[tuple[str, object, object]] = []  # (key, got, want): periods' and roll-ups' fields differ
    for (entity, series, label), truth in exp.periods.items():
        indicator, region, station = entity.split("|")
        key = f"{indicator}:{region}:{station}:{label}" + (f":{series}" if series else "")
        record = latest.get(key)
        aggregation = (
            "mean"
            if stream.feeds[indicator].aggregation == "weighted_mean"
            else stream.feeds[indicator].aggregation
        )
        want = (
            truth.count,
            truth.total,
            truth.low,
            truth.high,
            truth.last[2],
            truth.value(aggregation),
            "CLOSED",
        )
        got = (
            None
            if record is None
            else (
                record["count"],
                Decimal(record["sum_exact"]),
                record["min"],
                record["max"],
                record["latest_value"],
                record["value"],
                record["status"],
            )
        )
        if got != want:
            wrong.append((key, got, want))
    for (indicator, target, series, label), sources in exp.rollups.items():
        key = f"{indicator}:{target}:-:{label}" + (f":{series}" if series else "")
        record = latest.get(key)
        merged = gt.Truth()
        for name in sorted(sources):
            t = sources[name]
            merged.count += t.count
            merged.total += t.total
        want_rollup = (
            len(sources),
            merged.count,
            merged.total,
            gt.rollup_value(stream.feeds[indicator].aggregation, sources),
        )
        got_rollup = (
            None
            if record is None
            else (record["contributors"], record["count"], Decimal(record["sum_exact"]), record["value"])
        )
        if got_rollup != want_rollup:
            wrong.append((key, got_rollup, want_rollup))
    assert not wrong, f"{len(wrong)} consolidated records differ from the ground truth: {wrong[:5]}"


def _check_dead_letters(
    settings: Settings, blueprint: Blueprint, stream: gt.Stream, exp: gt.Expected
) -> None:
    stale: set[tuple[str, int]] = set()
    for reporter in sorted({s.topic_reporter for s in stream.sent}):
        for message in messages(settings, blueprint.dead_letter_topic(reporter).name, lambda: False, 3.0):
            letter = decode_public(blueprint, "dead_letter", message.value())
            assert letter["reason"] == "stale_revision", letter["message"]
            original = codecs.decode_any(blueprint.schemas, letter["original"])[1]
            stale.add((original["observation_id"], original["revision"]))
    assert stale == exp.stale


def test_ground_truth_labels_cut_off_on_the_15th_local_time() -> None:
    """The independent period labels of the ground truth, at the boundaries the issue names."""

    def at(year: int, month: int, day: int, hour: int, minute: int) -> int:
        return int(datetime(year, month, day, hour, minute, tzinfo=gt.VIETNAM).timestamp() * 1000)

    assert gt.labels(at(2024, 11, 14, 23, 59), "daily", "decree09")[:2] == ["2024-11-14", "2024-11"]
    assert gt.labels(at(2024, 11, 15, 0, 0), "daily", "decree09")[:2] == ["2024-11-15", "2024-12"]
    assert gt.labels(at(2024, 12, 15, 0, 0), "daily", "decree09")[1:] == [
        "2025-01",
        "2025-Q1",
        "2025-H1",
        "2025",
    ]
    assert gt.labels(at(2024, 12, 31, 23, 0), "daily", "calendar_month")[1:] == [
        "2024-12",
        "2024-Q4",
        "2024-H2",
        "2024",
    ]
    assert gt.local_day(at(2025, 7, 1, 0, 30)) == date(2025, 7, 1)
