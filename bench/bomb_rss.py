"""Decompression bombs against a librdkafka (confluent-kafka) consumer: what one costs, per codec and
per defence (issue 28, step 1).

    python -m bench.bomb_rss                        # every codec x every defence, then the burst rows
    python -m bench.bomb_rss --codecs lz4 --defences today,ab --burst 0

Runs against the local secured services as the admin (``eval "$(deploy/local/services env admin)"``),
on scratch topics ``bench.bomb-<uuid>.*`` deleted at the end. For each codec and defence it:

1. creates a topic with the defence's topic configs;
2. writes the largest bomb that topic takes (records of zeros in one record batch, compressed with the
   codec by a librdkafka producer, shrunk until the broker accepts it; never more than ``--cap-mib``
   inflated), followed by a small uncompressed sentinel record, on every partition;
3. reads it in a fresh subprocess, a consumer configured as the design memo proposes (the project's
   fetch settings, a small ``queued.max.messages.kbytes``), ``consume(num_messages=batch_max)`` until
   it reads the sentinels; the subprocess runs under ``RLIMIT_AS`` (``--limit-as-mib``) so a bomb
   cannot take the shared machine with it, and an allocation librdkafka cannot make aborts it;
4. prints the subprocess's VmHWM, what ``consume()`` returned (records, errors by name) and whether
   it moved past the bomb (the sentinel read, the position at the high watermark).

The burst rows put one bomb on each of several partitions of one topic: a fetch names every partition,
and librdkafka inflates every batch of a fetch response before the queue bound is looked at. The ``d``
rows read with a reader that bisects past a batch librdkafka reports undecodable (:func:`_skip_batch`).
Last, a well-behaved reporter writes to a topic of the (b') defence per codec (``--legit 0``: not).
Results and the recommendation: docs/performance.md, "Decompression bombs under librdkafka (measured)".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cramjam
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.common import admin_client, check_loopback
from stream_app.config.blueprint import reporter_max_message_bytes
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.produce import producer_config

MIB = 1024 * 1024
KIB = 1024
CODECS = ("lz4", "gzip", "snappy", "zstd")
SENTINEL = b"bomb-rss-sentinel"
RECORD_BYTES = 256 * KIB  # a record the intake accepts (STREAM_APP_INTAKE_MAX_RECORD_BYTES): passes (c)
BIG_RECORD_BYTES = 16 * MIB  # the shape of tests/integration/test_hostile_reporters.py's bombs
CONFIG_ENV = "BOMB_RSS_CONSUMER_CONFIG"  # the consumer's properties (with the password): never on argv


@dataclass(frozen=True)
class Defence:
    """One column of the table: topic configs and consumer overrides."""

    key: str
    label: str
    topic: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    record_bytes: int = RECORD_BYTES
    num_messages: int | None = None  # consume()'s num_messages; None: STREAM_APP_BATCH_MAX
    recompressed: str | None = None  # the codec the broker stores the batch in, when not the producer's
    skip_bad: bool = False  # (d): on an error, find the undecodable batch's end and seek past it
    cap: int | None = None  # the largest bomb written, inflated, when smaller than --cap-mib


def defences(reporter_max: int, record_cap: int) -> dict[str, Defence]:
    """The defences of the memo, (a)-(e), and the uncompressed variant of (b). ``reporter_max``: the
    topic plan's max.message.bytes of a reporter topic; ``record_cap``: (c)'s per-record bound."""
    small = 256 * KIB
    today = {"max.message.bytes": str(reporter_max)}
    return {
        d.key: d
        for d in (
            Defence("today", f"topic plan today ({reporter_max // KIB} KiB, producer codec)", today),
            Defence("a", "(a) max.message.bytes 256 KiB", {"max.message.bytes": str(small)}),
            Defence(
                "b", "(b) compression.type=lz4", {**today, "compression.type": "lz4"}, recompressed="lz4"
            ),
            Defence(
                "ab",
                "(a)+(b) 256 KiB, lz4",
                {"max.message.bytes": str(small), "compression.type": "lz4"},
                recompressed="lz4",
            ),
            Defence(
                "u",
                "(b') compression.type=uncompressed",
                {**today, "compression.type": "uncompressed"},
                recompressed="none",
            ),
            Defence(
                "c",
                f"(c) max.decompressed.message.bytes {record_cap // KIB} KiB",
                {**today, "max.decompressed.message.bytes": str(record_cap)},
            ),
            Defence(
                "c16",
                "(c) ditto, 16 MiB records",
                {**today, "max.decompressed.message.bytes": str(record_cap)},
                record_bytes=BIG_RECORD_BYTES,
            ),
            Defence(
                "n1", "today, read with consume(num_messages=1): librdkafka's share", today, num_messages=1
            ),
            Defence(
                "d",
                "(d) a 12 MiB bomb, the reader bisecting for the end of a batch it cannot read",
                today,
                skip_bad=True,
                cap=12 * MIB,
            ),
            Defence(
                "e64",
                "(e) off: queued.max.messages.kbytes at librdkafka's 64 MiB",
                today,
                consumer={"queued.max.messages.kbytes": 65536},
            ),
        )
    }


def consumer_properties(settings: Settings, group: str) -> dict[str, Any]:
    """The librdkafka consumer of the design memo (i28-design.md section 2), from the settings."""
    fetch_max = settings.fetch_max_batch_bytes
    return confluent_config(
        settings,
        **{
            "group.id": group,
            "client.id": "bomb-rss",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "partition.assignment.strategy": "roundrobin",
            "auto.offset.reset": "earliest",
            "fetch.min.bytes": settings.fetch_min_bytes,
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "max.partition.fetch.bytes": MIB,  # Faust's consumer_max_fetch_size, per partition
            "fetch.max.bytes": fetch_max,
            "receive.message.max.bytes": fetch_max + 512,  # librdkafka's floor for fetch.max.bytes
            "queued.max.messages.kbytes": 16 * 1024,
            "queued.min.messages": settings.batch_max,
            "check.crcs": True,
            "isolation.level": "read_uncommitted",
            "log_level": 4,
        },
    )


# --- the consumer subprocess ---------------------------------------------------------------------


def _vm(field_name: str) -> int:
    """A field of /proc/self/status, bytes."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * KIB
    return 0


def consume(
    topic: str, partitions: int, num_messages: int, deadline_s: float, *, skip_bad: bool = False
) -> dict[str, Any]:
    """Read ``topic`` from the beginning until every partition's sentinel is read (or the deadline);
    what consume() returned and the peak memory. ``skip_bad``: past a batch librdkafka cannot read
    (:func:`_skip_batch`), as a driver writing a stand-in for it would."""
    config: dict[str, Any] = json.loads(os.environ[CONFIG_ENV])
    consumer = Consumer(config)
    tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
    consumer.assign(tps)
    baseline = _vm("VmHWM")
    records = 0
    inflated = 0
    largest_call = 0
    errors: dict[str, int] = {}
    error_offsets: list[tuple[int, int]] = []
    error_text = ""
    probes = 0
    skipped: list[tuple[int, int]] = []
    passed: set[int] = set()
    started = time.monotonic()
    while len(passed) < partitions and time.monotonic() - started < deadline_s:
        messages = consumer.consume(num_messages=num_messages, timeout=0.5)
        call_bytes = 0
        for message in messages:
            error = message.error()
            if error is not None:
                errors[error.name()] = errors.get(error.name(), 0) + 1
                partition, offset = message.partition(), message.offset()
                error_offsets.append(
                    (-1 if partition is None else partition, -1 if offset is None else offset)
                )
                error_text = error_text or error.str()
                if skip_bad and partition is not None and offset is not None and offset >= 0:
                    after, tries = _skip_batch(consumer, TopicPartition(topic, partition), offset)
                    probes += tries
                    skipped.append((offset, after))
                continue
            value = message.value() or b""
            if value == SENTINEL:
                passed.add(message.partition() or 0)
                continue
            records += 1
            inflated += len(value)
            call_bytes += len(value)
        largest_call = max(largest_call, call_bytes)
        del messages
    elapsed = time.monotonic() - started
    positions = consumer.position([TopicPartition(topic, p) for p in range(partitions)])
    highs = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
    ]
    consumer.close()
    return {
        "baseline_hwm": baseline,
        "hwm": _vm("VmHWM"),
        "records": records,
        "inflated": inflated,
        "largest_call": largest_call,
        "errors": errors,
        "error_offsets": error_offsets[:4] + error_offsets[-4:],
        "error_text": error_text,
        "skipped": skipped,
        "probes": probes,
        "sentinels": len(passed),
        "positions": [tp.offset for tp in positions],
        "highs": highs,
        "elapsed_s": round(elapsed, 2),
    }


def _skip_batch(consumer: Consumer, tp: TopicPartition, base: int) -> tuple[int, int]:
    """Seek past the record batch at ``base`` that librdkafka cannot decompress, and return the first
    offset after it and how many fetches that took. librdkafka reports such a batch at its base offset
    (every seek inside it fails again at that offset) and does not say where it ends: bisect between
    ``base`` and the high watermark for the first offset whose fetch does not fail at ``base``."""
    low, high = base + 1, consumer.get_watermark_offsets(tp, timeout=10)[1]
    probes = 0
    while low < high:
        middle = (low + high) // 2
        consumer.seek(TopicPartition(tp.topic, tp.partition, middle))
        probes += 1
        outcome = None
        while outcome is None:
            for message in consumer.consume(num_messages=1, timeout=1.0):
                if message.partition() == tp.partition:
                    error = message.error()
                    outcome = "fails" if error is not None and message.offset() == base else "reads"
        if outcome == "fails":
            low = middle + 1
        else:
            high = middle
    consumer.seek(TopicPartition(tp.topic, tp.partition, low))
    return low, probes


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Bomb:
    """What was written to one partition."""

    records: int = 0
    inflated: int = 0
    refused: list[str] = field(default_factory=list)  # the broker's answers to larger attempts


@dataclass
class Row:
    codec: str
    defence: Defence
    partitions: int
    bombs: list[Bomb]
    outcome: dict[str, Any]


def _ratio(codec: str) -> float:
    """How far zeros shrink under ``codec`` (a first guess of the bomb's size; the broker decides)."""
    sample = bytes(16 * MIB)
    compressors: dict[str, Callable[[bytes], Any]] = {
        "lz4": cramjam.lz4.compress,
        "gzip": cramjam.gzip.compress,
        "snappy": cramjam.snappy.compress_raw,
        "zstd": cramjam.zstd.compress,
        "none": bytes,
    }
    return len(sample) / max(1, len(compressors[codec](sample)))


def bomb_producer(config: dict[str, Any], codec: str) -> Producer:
    """A producer that puts everything it is given for a partition in one record batch compressed with
    ``codec`` (librdkafka counts ``batch.size`` before compression: a bomb of up to 2 GB is one batch)."""
    return Producer(
        {
            **config,
            "acks": "all",
            "compression.type": codec,
            "message.max.bytes": 1_000_000_000,
            "batch.size": 2_000_000_000,
            "batch.num.messages": 1_000_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "linger.ms": 2000,
            "request.timeout.ms": 120_000,
            "message.timeout.ms": 180_000,
            "log_level": 3,
        }
    )


def _write_bomb(
    settings: Settings, topic: str, partition: int, codec: str, *, defence: Defence, cap: int
) -> Bomb:
    """The largest bomb the topic takes (at most ``cap`` inflated), then a sentinel, on ``partition``."""
    limit = int(defence.topic.get("max.message.bytes", str(MIB)))
    stored = defence.recompressed or codec
    ratio = min(_ratio(codec), _ratio(stored))
    size = defence.record_bytes
    count = max(1, min(cap // size, int(limit * ratio) // size))
    bomb = Bomb()
    zeros = bytes(size)
    while count >= 1:
        failures: list[str] = []

        def report(error: KafkaError | None, _message: Any, failures: list[str] = failures) -> None:
            if error is not None:
                failures.append(error.name())

        producer = bomb_producer(confluent_config(settings), codec)
        for _ in range(count):
            producer.produce(
                topic, key=b"HN-AQ-HOANKIEM", value=zeros, partition=partition, on_delivery=report
            )
        if producer.flush(120) != 0:
            raise RuntimeError(f"{topic}: the bomb was not delivered in 120 s")
        del producer
        if not failures:
            bomb.records, bomb.inflated = count, count * size
            break
        bomb.refused.append(f"{_size(count * size)}: {sorted(set(failures))[0]}")
        if "INVALID_RECORD" in failures:  # a record over (c)'s bound: fewer of them do not help
            break
        if len(failures) != count:  # split in several batches, some stored: that is the bomb
            bomb.records = count - len(failures)
            bomb.inflated = bomb.records * size
            break
        count = int(count * 0.85) if count > 1 else 0
    sentinel = Producer(
        {**confluent_config(settings), "acks": "all", "compression.type": "none", "log_level": 3}
    )
    sentinel.produce(topic, key=b"k", value=SENTINEL, partition=partition)
    if sentinel.flush(30) != 0:
        raise RuntimeError(f"{topic}: the sentinel was not delivered")
    return bomb


def _legit(settings: Settings, topic: str, codec: str, count: int) -> dict[str, int]:
    """A well-behaved reporter: ``count`` observation-sized records (~300 bytes, compressible as real
    ones are) batched as `stream-app produce` batches them (batch.size = the topic's max.message.bytes,
    counted before compression: more than librdkafka's default 1,000,000)."""
    rng = random.Random(28)
    counts = {"sent": count, "delivered": 0, "refused": 0}

    def report(error: KafkaError | None, _message: Any) -> None:
        counts["refused" if error is not None else "delivered"] += 1

    producer = Producer({**producer_config(settings, 100_000), "compression.type": codec})
    for n in range(count):
        value = (
            f"obs-{n:09d}|MAE|ENV.AQI|01|HN-AQ-HOANKIEM|{rng.uniform(0, 500):.3f}|index|"
            f"{1_700_000_000_000 + n * 3_600_000}|FINAL|"
        ).encode() + rng.randbytes(16).hex().encode() * 6
        while True:
            try:
                producer.produce(topic, key=b"HN-AQ-HOANKIEM", value=value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"{topic}: not delivered in 120 s")
    return counts


def _run_consumer(
    settings: Settings, topic: str, partitions: int, *, defence: Defence, limit_as: int, deadline_s: float
) -> dict[str, Any]:
    """The consumer subprocess under RLIMIT_AS; its report, or how it died."""
    config = {**consumer_properties(settings, f"{topic}.g"), **defence.consumer}
    env = {
        **os.environ,
        CONFIG_ENV: json.dumps(config),
        # glibc reserves 64 MiB of address space per thread arena: without this, RLIMIT_AS would count
        # reservations, not memory. RSS is unaffected.
        "MALLOC_ARENA_MAX": "2",
    }

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    argv = [sys.executable, "-m", "bench.bomb_rss", "consume", topic, str(partitions)]
    num_messages = defence.num_messages or settings.batch_max
    argv += ["--num-messages", str(num_messages), "--deadline", str(deadline_s)]
    if defence.skip_bad:
        argv.append("--skip-bad")
    done = subprocess.run(  # noqa: S603 - our own module, our own arguments
        argv, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=deadline_s + 60, check=False
    )
    if done.returncode == 0:
        outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        outcome["died"] = None
    else:
        cause = signal.Signals(-done.returncode).name if done.returncode < 0 else f"exit {done.returncode}"
        outcome = {"died": cause}
    outcome["stderr"] = [line for line in done.stderr.splitlines() if line.strip()][-3:]
    return outcome


def _size(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n // KIB} KiB"


def _describe(row: Row) -> tuple[str, str, str, str]:
    """The table's cells: the bomb, VmHWM, what consume() returned, moved past."""
    bombs = row.bombs
    inflated = sum(b.inflated for b in bombs)
    refused = next((b.refused[0] for b in bombs if b.refused), "")
    if not inflated:
        bomb = f"refused ({refused})" if refused else "none"
    else:
        each = f"{len(bombs)} x " if len(bombs) > 1 else ""
        bomb = f"{each}{_size(bombs[0].inflated)} ({bombs[0].records} rec)"
        if refused:
            bomb += f"; refused {refused}"
    out = row.outcome
    if out.get("died"):
        return bomb, f"> {out['limit_mib']} (cap)", f"process died: {out['died']}", "no"
    hwm = f"{out['hwm'] / MIB:.0f} (base {out['baseline_hwm'] / MIB:.0f})"
    returned = f"{out['records']} rec, {_size(out['inflated'])}"
    if out["errors"]:
        returned += "; " + ", ".join(f"{n}x{name}" for name, n in sorted(out["errors"].items()))
    for base, after in out.get("skipped", []):
        returned += f"; skipped {base}-{after - 1} in {out['probes']} fetches"
    moved = all(p >= h for p, h in zip(out["positions"], out["highs"], strict=True))
    past = (
        "yes" if out["sentinels"] == row.partitions and moved else f"no ({out['sentinels']}/{row.partitions})"
    )
    return bomb, hwm, returned, past


def _print(rows: list[Row]) -> None:
    header = ("codec", "defence", "bomb written (inflated)", "VmHWM MiB", "consume() returned", "moved past")
    cells = [
        header,
        *[
            (r.codec + (f" x{r.partitions}p" if r.partitions > 1 else ""), r.defence.key, *_describe(r))
            for r in rows
        ],
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for index, line in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    for d in {r.defence.key: r.defence for r in rows}.values():
        print(f"  {d.key}: {d.label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bomb_rss", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    inner = sub.add_parser("consume", help="(internal) the consumer subprocess")
    inner.add_argument("topic")
    inner.add_argument("partitions", type=int)
    inner.add_argument("--num-messages", type=int, default=2000)
    inner.add_argument("--deadline", type=float, default=40.0)
    inner.add_argument("--skip-bad", action="store_true")
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--defences", default="today,n1,a,b,ab,u,c,c16,d,e64")
    parser.add_argument("--burst", type=int, default=4, help="partitions of the burst rows (0: none)")
    parser.add_argument("--burst-codecs", default="lz4,gzip")
    parser.add_argument("--burst-defences", default="today,ab,u")
    parser.add_argument("--cap-mib", type=int, default=768, help="largest bomb written, inflated")
    parser.add_argument("--limit-as-mib", type=int, default=2048, help="RLIMIT_AS of the consumer")
    parser.add_argument("--deadline", type=float, default=40.0, help="longest read, seconds")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--legit", type=int, default=200_000, help="records of the well-behaved reporter")
    parser.add_argument("--legit-codecs", default=",".join(CODECS))
    args = parser.parse_args(argv)
    if args.command == "consume":
        print(
            json.dumps(
                consume(args.topic, args.partitions, args.num_messages, args.deadline, skip_bad=args.skip_bad)
            )
        )
        return 0
    return _harness(args)


def _names(listed: str) -> list[str]:
    return [name for name in listed.split(",") if name]


def _harness(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still deletes its topics
    settings = Settings()
    check_loopback(settings)
    record_cap = settings.intake_max_record_bytes + settings.intake_max_key_bytes + 64 * KIB
    table = defences(reporter_max_message_bytes(settings), record_cap)
    plan = [(c, table[d], 1) for c in _names(args.codecs) for d in _names(args.defences)]
    if args.burst:
        plan += [
            (c, table[d], args.burst) for c in _names(args.burst_codecs) for d in _names(args.burst_defences)
        ]
    prefix = f"bench.bomb-{uuid.uuid4().hex[:8]}."
    admin = admin_client(settings)
    rows: list[Row] = []
    legit: list[tuple[str, dict[str, int]]] = []
    try:
        for index, (codec, defence, partitions) in enumerate(plan):
            topic = f"{prefix}{index}.{codec}.{defence.key}"
            new = NewTopic(topic, partitions, -1, config=defence.topic)
            for future in admin.create_topics([new], request_timeout=30).values():
                future.result()
            time.sleep(1.0)  # the leader elected before the first produce
            bombs = [
                _write_bomb(
                    settings,
                    topic,
                    p,
                    codec,
                    defence=defence,
                    cap=(defence.cap or args.cap_mib * MIB) // partitions,
                )
                for p in range(partitions)
            ]
            outcome = _run_consumer(
                settings,
                topic,
                partitions,
                defence=defence,
                limit_as=args.limit_as_mib * MIB,
                deadline_s=args.deadline,
            )
            outcome["limit_mib"] = args.limit_as_mib
            rows.append(Row(codec, defence, partitions, bombs, outcome))
            print(
                f"[{index + 1}/{len(plan)}] {codec} x{partitions} {defence.key}: {_describe(rows[-1])}",
                flush=True,
            )
            with contextlib.suppress(Exception):
                for future in admin.delete_topics([topic], operation_timeout=30).values():
                    future.result()
        for codec in _names(args.legit_codecs) if args.legit else []:
            topic = f"{prefix}legit.{codec}"
            for future in admin.create_topics([NewTopic(topic, 1, -1, config=table["u"].topic)]).values():
                future.result()
            time.sleep(1.0)
            legit.append((codec, _legit(settings, topic, codec, args.legit)))
            print(f"legit {codec}: {legit[-1][1]}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            left = [n for n in admin.list_topics(timeout=10).topics if n.startswith(prefix)]
            if left:
                for future in admin.delete_topics(left, operation_timeout=30).values():
                    with contextlib.suppress(Exception):
                        future.result()
    print()
    _print(rows)
    for codec, counts in legit:
        print(
            f"  a well-behaved reporter on a (b') topic, batched as `stream-app produce` does, {codec}: "
            f"{counts['delivered']} of {counts['sent']} delivered, {counts['refused']} refused"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                [
                    {
                        "codec": r.codec,
                        "defence": r.defence.key,
                        "partitions": r.partitions,
                        "bombs": [vars(b) for b in r.bombs],
                        "outcome": r.outcome,
                    }
                    for r in rows
                ],
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
