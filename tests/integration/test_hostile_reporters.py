"""Hostile reporters, second round, on the real broker and Redis as `make services` ships them: nothing
a reporter sends can stall the intake or balloon a worker.

- Keys, headers and values as large as a reporter topic takes: every dead letter fits (the oversized
  parts replaced by size and digest); a dead letter Kafka refuses anyway is sent in its minimal form,
  and one refused even then is counted and skipped, never waited for.
- Record batches that inflate to hundreds of megabytes (zstd, gzip, lz4), one declaring more records
  than allowed (snappy): each dead-lettered by position without being inflated, the worker's peak
  memory within deploy/k8s's limit. (A batch aiokafka cannot read, a header name that is not UTF-8, is
  tested in tests/unit/test_fetch_bounds.py: no client here sends one.)

After each: the valid observations sent behind the poison (from the same reporter and from another)
are applied, no agent crashed, and ``/readyz`` answers 200.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from stream_app.config.blueprint import Blueprint, reporter_max_message_bytes
from stream_app.kafka.config import confluent_config
from stream_app.ops.metrics import AGENTS
from stream_app.settings import REPO_ROOT, Settings
from stream_app.wire import codecs

from .support import collect, metric_value, observation, probe, produce

pytestmark = pytest.mark.chaos

MIB = 1024 * 1024


def _k8s_memory_limit() -> int:
    """The worker's memory limit in deploy/k8s (bytes)."""
    for document in yaml.safe_load_all(
        (REPO_ROOT / "deploy" / "k8s" / "base" / "worker-deployment.yaml").read_text(encoding="utf-8")
    ):
        if document and document.get("kind") == "Deployment":
            [container] = [
                c for c in document["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"
            ]
            limit = str(container["resources"]["limits"]["memory"])
            assert limit.endswith("Mi"), limit
            return int(limit[:-2]) * MIB
    raise AssertionError("no worker Deployment in deploy/k8s/base/worker-deployment.yaml")


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _valid(blueprint: Blueprint, tag: str) -> list[tuple[str, bytes, bytes, str]]:
    """A valid MAE and a valid MPS observation: (topic, key, value, the consolidated key prefix)."""
    now_ms = int(time.time() * 1000)
    schema = blueprint.schemas.latest("observation")
    mae = observation(observation_id=f"mae-{tag}", value=float(len(tag)))
    mps = observation(
        observation_id=f"mps-{tag}",
        reporter="MPS",
        indicator="TRF.DEATHS",
        region="79",
        station=None,
        unit="persons",
        value=3.0,
        event_time=now_ms - 3_600_000,
        report_time=now_ms - 3_000_000,
    )
    return [
        (
            blueprint.input_topic("MAE").name,
            b"HN-AQ-HOANKIEM",
            codecs.encode(schema, mae),
            "ENV.AQI:01:HN-AQ-HOANKIEM:",
        ),
        (blueprint.input_topic("MPS").name, b"79", codecs.encode(schema, mps), "TRF.DEATHS:79:-:"),
    ]


def _send_valid(settings: Settings, blueprint: Blueprint, tag: str) -> list[str]:
    sent = _valid(blueprint, tag)
    for topic, key, value, _ in sent:
        produce(settings, topic, [(key, value)])
    return [prefix for *_, prefix in sent]


def _applied(
    settings: Settings, blueprint: Blueprint, prefixes: list[str], count: int, timeout: float = 90
) -> None:
    """Wait until the consolidated topic shows ``count`` observations applied for each entity."""
    topic = blueprint.topic_by_role("consolidated").name

    def done(rows: list[dict[str, Any]]) -> bool:
        return all(
            any(r["scope"] == "ENTITY" and r["key"].startswith(p) and r["count"] >= count for r in rows)
            for p in prefixes
        )

    rows = collect(settings, topic, "consolidated", done, timeout=timeout).records
    assert done(rows), f"not applied behind the poison: {prefixes} (count {count})"


def _letters(
    settings: Settings, blueprint: Blueprint, until: int, timeout: float = 60
) -> list[dict[str, Any]]:
    topic = blueprint.dead_letter_topic("MAE").name
    return collect(settings, topic, "dead_letter", lambda r: len(r) >= until, timeout=timeout).records


def _healthy(settings: Settings, worker: Any) -> None:
    status, body = probe(settings, "/readyz")
    assert status == 200, body
    exposition = worker.metrics()
    for agent in AGENTS:
        assert metric_value(exposition, "stream_app_agent_crashes_total", agent=agent) == 0, agent
    assert "Crashed reason" not in worker.log()


def _set_max_message_bytes(settings: Settings, topic: str, size: int) -> None:
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", str(size), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def test_every_dead_letter_fits_and_a_refused_one_never_stalls_the_intake(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    mae = blueprint.input_topic("MAE").name
    room = reporter_max_message_bytes(settings) - 8 * 1024  # a record as large as the topic takes
    big_key = os.urandom(64) * (room // 64)
    producer = Producer({**confluent_config(settings), "acks": "all", "message.max.bytes": 2 * room})
    producer.produce(mae, key=big_key, value=b"not avro")
    producer.produce(mae, key=b"k", value=b"also not avro", headers=[("h", os.urandom(32) * (room // 32))])
    producer.produce(mae, key=b"k", value=b"many headers", headers=[(f"h{i}", b"v") for i in range(500)])
    assert producer.flush(30) == 0
    prefixes = _send_valid(settings, blueprint, "first")
    _applied(settings, blueprint, prefixes, 1)

    letters = _letters(settings, blueprint, 3)
    by_value = {letter["original"]: letter for letter in letters}
    keyed = by_value[b"not avro"]
    assert (keyed["source_key"], keyed["source_key_truncated"], keyed["source_key_size"]) == (
        None,
        True,
        len(big_key),
    )
    assert keyed["source_key_sha256"] == hashlib.sha256(big_key).digest()
    for value in (b"also not avro", b"many headers"):
        assert by_value[value]["source_headers_truncated"], value
        assert by_value[value]["source_headers"] == []
    _healthy(settings, worker)

    # The broker refuses the full letter for good (its topic shrunk under it): the minimal one goes.
    dead_letters = blueprint.dead_letter_topic("MAE").name
    _set_max_message_bytes(settings, dead_letters, 1200)
    refused = os.urandom(4000)  # random: the worker's producer compresses, and this must not shrink
    produce(settings, mae, [(b"k", refused)])
    prefixes = _send_valid(settings, blueprint, "second")
    _applied(settings, blueprint, prefixes, 2)
    minimal = [letter for letter in _letters(settings, blueprint, 4) if letter["minimal"]]
    assert len(minimal) == 1
    assert (minimal[0]["original"], minimal[0]["original_size"]) == (b"", 4000)
    assert minimal[0]["original_sha256"] == hashlib.sha256(refused).digest()
    assert metric_value(worker.metrics(), "stream_app_dead_letters_reduced_total", stage="intake") >= 1

    # ... and refuses even the minimal one: counted, logged and skipped; the intake goes on.
    _set_max_message_bytes(settings, dead_letters, 100)
    produce(settings, mae, [(b"k", os.urandom(4000))])
    prefixes = _send_valid(settings, blueprint, "third")
    _applied(settings, blueprint, prefixes, 3)
    exposition = worker.metrics()
    assert metric_value(exposition, "stream_app_dead_letters_lost_total", stage="intake") == 1
    assert "dead_letter_lost" in worker.log()
    _healthy(settings, worker)


def _bomb(settings: Settings, topic: str, codec: str, inflated: int) -> None:
    """One record batch of ``inflated`` bytes of zeros (a few records), compressed with ``codec``."""
    per_record = 16 * MIB
    producer = Producer(
        {
            **confluent_config(settings),
            "acks": "all",
            "compression.type": codec,
            "message.max.bytes": 1_000_000_000,
            "batch.size": 2_000_000_000 // 2,
            "linger.ms": 500,
        }
    )
    zeros = bytes(per_record)
    for _ in range(inflated // per_record):
        producer.produce(topic, key=b"HN-AQ-HOANKIEM", value=zeros, partition=0)
    assert producer.flush(60) == 0


def test_record_batches_that_inflate_are_dead_lettered_by_position_within_the_memory_limit(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    mae = blueprint.input_topic("MAE").name
    prefixes = _send_valid(settings, blueprint, "before")
    _applied(settings, blueprint, prefixes, 1)
    baseline = _peak_rss(worker.proc.pid)

    _bomb(settings, mae, "zstd", 384 * MIB)
    _bomb(settings, mae, "gzip", 192 * MIB)
    _bomb(settings, mae, "lz4", 48 * MIB)
    many = Producer(
        {
            **confluent_config(settings),
            "compression.type": "snappy",
            "batch.num.messages": 100_000,
            "batch.size": 50_000_000,
            "linger.ms": 1000,
        }
    )
    for _ in range(settings.fetch_max_batch_records + 5000):
        many.produce(mae, key=b"k", value=b"", partition=0)
    assert many.flush(60) == 0
    prefixes = _send_valid(settings, blueprint, "after")
    _applied(settings, blueprint, prefixes, 2, timeout=120)

    wanted = {"batch_too_many_records", "decompressed_too_large"}
    topic = blueprint.dead_letter_topic("MAE").name

    def enough(records: list[dict[str, Any]]) -> bool:
        seen = Counter(x["reason"] for x in records)
        return seen["batch_too_many_records"] >= 1 and seen["decompressed_too_large"] >= 3

    letters = collect(settings, topic, "dead_letter", enough, timeout=60).records
    reasons = Counter(letter["reason"] for letter in letters)
    assert set(reasons) == wanted, reasons
    assert reasons["decompressed_too_large"] >= 3, "zstd, gzip and lz4 (librdkafka may split one in two)"
    for letter in letters:  # by position: the batch's first and last offsets, its compressed size
        assert letter["source_last_offset"] >= letter["source_offset"], letter
        assert (letter["original"], letter["original_truncated"]) == (b"", True)
        assert 0 < letter["original_size"] < reporter_max_message_bytes(settings)
    exposition = worker.metrics()
    withheld = metric_value(
        exposition, "stream_app_fetch_batches_withheld_total", reason="decompressed_too_large"
    )
    assert withheld >= 3, "zstd, gzip and lz4"

    peak = _peak_rss(worker.proc.pid)
    limit = _k8s_memory_limit()
    print(
        f"worker peak RSS: {baseline / MIB:.0f} MiB before, {peak / MIB:.0f} MiB after "
        f"(limit {limit / MIB:.0f} MiB)"
    )
    assert peak < limit - 128 * MIB, (
        f"peak {peak / MIB:.0f} MiB: too close to the {limit / MIB:.0f} MiB limit"
    )
    assert peak - baseline < settings.fetch_max_batch_bytes * 4, "never more than a few batch budgets"
    _healthy(settings, worker)


def test_a_gzip_batch_that_inflates_to_a_gigabyte_is_withheld_and_its_partition_goes_on(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    """The largest gzip bomb a reporter topic takes (just under its 1 MiB ``max.message.bytes``,
    about 944 MiB inflated): withheld and dead-lettered by position on either driver
    (STREAM_APP_CONSUMER_DRIVER; librdkafka would inflate it whole and abort: docs/performance.md), the
    worker's memory bounded, and the next records of that very partition applied."""
    worker = start_worker(settings)
    mae = blueprint.input_topic("MAE").name
    prefixes = _send_valid(settings, blueprint, "before")
    _applied(settings, blueprint, prefixes, 1)
    baseline = _peak_rss(worker.proc.pid)

    delivered: list[tuple[int | None, int | None]] = []
    producer = Producer(
        {
            **confluent_config(settings),
            "acks": "all",
            "compression.type": "gzip",
            "message.max.bytes": 1_000_000_000,
            "batch.size": 1_000_000_000,
            "linger.ms": 2000,
        }
    )
    zeros = bytes(16 * MIB)
    for _ in range(59):  # the valid MAE observation's key (below): the same partition
        producer.produce(
            mae,
            key=b"HN-AQ-HOANKIEM",
            value=zeros,
            on_delivery=lambda err, msg: (
                delivered.append((msg.partition(), msg.offset())) if not err else None
            ),
        )
    assert producer.flush(120) == 0
    assert len(delivered) == 59, "the broker took the bomb"
    del producer, zeros
    [partition] = {p for p, _ in delivered}
    offsets = [o for _, o in delivered if o is not None]
    first, last = min(offsets), max(offsets)

    prefixes = _send_valid(settings, blueprint, "after")  # behind the bomb, in its partition
    _applied(settings, blueprint, prefixes, 2, timeout=120)

    topic = blueprint.dead_letter_topic("MAE").name

    def withheld(records: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
        return sorted(
            (r["source_partition"], r["source_offset"], r["source_last_offset"])
            for r in records
            if r["reason"] == "decompressed_too_large"
        )

    letters = withheld(
        collect(
            settings, topic, "dead_letter", lambda r: any(x[2] == last for x in withheld(r)), timeout=60
        ).records
    )
    # by position, batch by batch (the producer may cut the 59 records in two batches near its 1e9 bound)
    assert 1 <= len(letters) <= 2, letters
    assert letters[0][1] == first, letters
    assert letters[-1][2] == last, letters
    assert all(p == partition for p, _, _ in letters), letters
    assert all(a[2] + 1 == b[1] for a, b in pairwise(letters)), letters

    peak = _peak_rss(worker.proc.pid)
    print(f"worker peak RSS: {baseline / MIB:.0f} MiB before, {peak / MIB:.0f} MiB after the 944 MiB bomb")
    assert peak - baseline < settings.fetch_max_batch_bytes * 4, "never more than a few batch budgets"
    _healthy(settings, worker)
