"""Naive Faust: the pipeline one record at a time, as Faust's examples and most first agents are
written: ``async for`` over the stream, and per record an awaited Redis read, an awaited Redis
write and awaited sends.

    python -m bench.peers.naive_faust --spec SPEC.json --bootstrap HOST:PORT --group G \
        --redis-url URL --prefix P --out TOPIC --dlq TOPIC --alerts TOPIC --datadir DIR

Runs until stopped (SIGTERM); the harness counts its outputs on Kafka.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import faust
import redis.asyncio as aioredis

from bench.peers.pipeline import Pipeline, Rejected, entity_of, load_spec
from stream_app.kafka.config import faust_credentials
from stream_app.settings import Settings


def build(args: argparse.Namespace) -> faust.App:
    spec = load_spec(args.spec)
    pipeline = Pipeline(spec)
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        broker_credentials=faust_credentials(Settings()),  # the harness's identity, from STREAM_APP_*
        datadir=args.datadir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
    )
    source = app.topic(
        *(spec.get("subscribe") or spec["input_topics"]), key_serializer="raw", value_serializer="raw"
    )
    out = app.topic(args.out, key_serializer="raw", value_serializer="raw")
    dlq = app.topic(args.dlq, key_serializer="raw", value_serializer="raw")
    alerts = app.topic(args.alerts, key_serializer="raw", value_serializer="raw")
    client: Any = aioredis.from_url(args.redis_url)

    async def naive(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            raw: bytes = message.value or b""
            try:
                record = pipeline.decode(raw)
                pipeline.check(record, message.topic)
            except Rejected:
                await dlq.send(key=message.key, value=raw)
                continue
            entity = entity_of(record)
            key = f"{args.prefix}:agg:{entity}"
            stored = await client.get(key)
            result = pipeline.step(record, message.topic, json.loads(stored) if stored else None)
            await client.set(key, json.dumps(result.aggregate))
            await out.send(key=entity.encode(), value=result.output)
            if result.alert is not None:
                await alerts.send(key=entity.encode(), value=result.alert)

    naive.__name__ = naive.__qualname__ = "naive"
    app.agent(source, name="naive")(naive)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.naive_faust")
    for name in ("spec", "bootstrap", "group", "redis-url", "prefix", "out", "dlq", "alerts", "datadir"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    app = build(args)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
