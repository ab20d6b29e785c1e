"""What a decompression bomb costs the *broker*, by the topic's ``compression.type`` (issue 28: defence
(b′), reporter topics stored uncompressed, measured and rejected).

    python -m bench.broker_bomb --codec gzip --inflated-mib 512 --topic-compression uncompressed
    python -m bench.broker_bomb --codec gzip --inflated-mib 900 --topic-compression producer

Runs as the admin of the services in the environment (``eval "$(deploy/local/cluster env admin)"``:
the cluster profile's brokers, so that a broker hurt by the bomb is not the one every other test uses).
It creates two scratch topics ``bench.bbomb-<id>`` and ``…-good`` (deleted at the end), writes one
batch of ``--inflated-mib`` of 256 KiB zero records compressed with ``--codec`` to the first, while a
well-behaved producer writes a 100-byte record every 50 ms to the second, and prints the produce answer
and what the well-behaved producer saw. Whether the broker ran out of heap is in its own log
(``grep OutOfMemoryError .local/cluster/kafka-*/server.log``). Results: docs/performance.md,
"(b′) at the broker".
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.bomb_rss import bomb_producer
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings

RECORD = bytes(256 * 1024)
REPORTER_MAX_MESSAGE_BYTES = "1048588"  # what reporter_limits gives a reporter's topics


class WellBehaved(threading.Thread):
    """A producer writing a small record every 50 ms until stopped: its delivery times and errors."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        super().__init__(daemon=True)
        self.config, self.topic = config, topic
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        producer = Producer({**self.config, "acks": "all", "linger.ms": 0})
        while not self.stopping.is_set():
            sent = time.monotonic()

            def delivered(error: KafkaError | None, _message: Any, sent: float = sent) -> None:
                if error is not None:
                    self.errors.append(error.name())
                else:
                    self.latencies.append(time.monotonic() - sent)

            producer.produce(self.topic, b"x" * 100, on_delivery=delivered)
            producer.poll(0.05)
        producer.flush(30)


def write_bomb(config: dict[str, Any], topic: str, codec: str, inflated_mib: int) -> tuple[int, list[str]]:
    """One batch of ``inflated_mib`` of zero records, compressed with ``codec``: (records, errors)."""
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failures.append(error.name())

    producer = bomb_producer(config, codec)
    count = inflated_mib * 1024 * 1024 // len(RECORD)
    for _ in range(count):
        producer.produce(topic, key=b"k", value=RECORD, partition=0, on_delivery=delivered)
    if producer.flush(200) != 0:
        failures.append("not delivered in 200 s")
    return count, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_bomb", description=__doc__.split("\n")[0])
    parser.add_argument("--codec", default="gzip", choices=["gzip", "lz4", "snappy", "zstd"])
    parser.add_argument("--inflated-mib", type=int, default=512)
    parser.add_argument("--topic-compression", default="uncompressed")
    args = parser.parse_args(argv)
    config = confluent_config(Settings())
    admin = AdminClient(config)
    topic = f"bench.bbomb-{uuid.uuid4().hex[:8]}"
    good = f"{topic}-good"
    topic_config = {
        "compression.type": args.topic_compression,
        "max.message.bytes": REPORTER_MAX_MESSAGE_BYTES,
    }
    for name, cfg in ((topic, topic_config), (good, {})):
        admin.create_topics([NewTopic(name, 1, replication_factor=-1, config=cfg)])[name].result()
    well_behaved = WellBehaved(config, good)
    well_behaved.start()
    try:
        time.sleep(2)
        started = time.monotonic()
        count, failures = write_bomb(config, topic, args.codec, args.inflated_mib)
        answer = f"refused: {sorted(set(failures))} ({len(failures)}/{count})" if failures else "stored"
        print(
            f"bomb: {args.codec}, {args.inflated_mib} MiB inflated ({count} records), topic"
            f" compression.type={args.topic_compression}: {answer} in {time.monotonic() - started:.1f} s"
        )
        time.sleep(5)
    finally:
        well_behaved.stopping.set()
        well_behaved.join()
        admin.delete_topics([topic, good])
    times = sorted(well_behaved.latencies)
    if times:
        print(
            f"well-behaved producer: {len(times)} delivered, errors {sorted(set(well_behaved.errors))},"
            f" p50 {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
        )
    else:
        print(f"well-behaved producer: nothing delivered, errors {sorted(set(well_behaved.errors))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
