"""The floor: a plain confluent-kafka consumer loop that decodes each observation and does nothing
else. No framework, no state, no outputs: the most a Python consumer of these topics can do.

    python -m bench.peers.floor --spec SPEC.json --bootstrap HOST:PORT --group G --limit N

Prints one JSON line: records, rejected (undecodable), seconds from the first record to the last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Consumer

from bench.peers.pipeline import Pipeline, Rejected, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.floor")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--kafka-config", default="{}", help="librdkafka properties (JSON): security")
    parser.add_argument("--group", required=True)
    parser.add_argument("--limit", type=int, required=True, help="records to read, then stop")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    pipeline = Pipeline(spec)
    consumer = Consumer(
        {
            **json.loads(args.kafka_config),
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    consumer.subscribe(list(spec.get("subscribe") or spec["input_topics"]))
    count = rejected = 0
    first = last = 0.0
    deadline = time.monotonic() + args.timeout
    try:
        while count < args.limit and time.monotonic() < deadline:
            messages = consumer.consume(1000, 0.5)
            for message in messages:
                if message.error() is not None:
                    continue
                if not count:
                    first = time.perf_counter()
                count += 1
                try:
                    pipeline.decode(message.value() or b"")
                except Rejected:
                    rejected += 1
            if messages:
                last = time.perf_counter()
    finally:
        consumer.close()
    print(json.dumps({"records": count, "rejected": rejected, "seconds": last - first}), flush=True)
    return 0 if count >= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
