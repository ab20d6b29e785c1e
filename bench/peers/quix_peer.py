"""The peer: the same pipeline written with Quix Streams' own idiomatic API, run in its own
virtualenv (quixstreams pins a confluent-kafka older than this project's).

Per input topic a StreamingDataFrame: a deserializer decodes the record; ``apply`` checks it;
rejected records branch to the dead-letter topic with their original bytes; accepted ones go
through a stateful ``apply`` that folds each into its entity's aggregate (Quix state: RocksDB with
a changelog topic, Quix's own way to keep state), then to the output topic, alerts to the alerts
topic, and the aggregates to Redis through Quix's batching ``RedisSink`` (one pipelined
transaction per partition and checkpoint).

    python -m bench.peers.quix_peer --spec SPEC.json --bootstrap HOST:PORT --group G \
        --redis-url URL --prefix P --out TOPIC --dlq TOPIC --alerts TOPIC --state-dir DIR

Runs until stopped (SIGTERM); the harness counts its outputs on Kafka.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from quixstreams import Application, State
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models.serializers import Deserializer, SerializationContext
from quixstreams.sinks.community.redis import RedisSink

from bench.peers.pipeline import Pipeline, Rejected, entity_of, load_spec


class ObservationDeserializer(Deserializer):
    """Avro single-object or JSON observation -> dict; an undecodable record becomes a rejection
    carrying its bytes, so that it can be dead-lettered rather than stop the application."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        try:
            record = self.pipeline.decode(value)
        except Rejected as exc:
            return {"_rejected": exc.reason, "_raw": value, "_topic": ctx.topic}
        record["_raw"] = value
        record["_topic"] = ctx.topic
        return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.quix_peer")
    for name in ("spec", "bootstrap", "group", "redis-url", "prefix", "out", "dlq", "alerts", "state-dir"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--kafka-config", default="{}", help="librdkafka properties (JSON): security")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    pipeline = Pipeline(spec)

    kafka = {**json.loads(args.kafka_config), "bootstrap.servers": args.bootstrap}
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(kafka, ignore_extras=True),
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel=os.environ.get("BENCH_QUIX_LOGLEVEL", "WARNING"),
    )
    out = app.topic(args.out, key_serializer="bytes", value_serializer="bytes")
    dlq = app.topic(args.dlq, key_serializer="bytes", value_serializer="bytes")
    alerts = app.topic(args.alerts, key_serializer="bytes", value_serializer="bytes")
    url = urlsplit(args.redis_url)
    tls = dict(parse_qsl(url.query))
    redis_sink = RedisSink(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int((url.path or "/0").lstrip("/") or 0),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        ssl=url.scheme == "rediss",
        **({"ssl_ca_certs": tls["ssl_ca_certs"]} if "ssl_ca_certs" in tls else {}),
        key_serializer=lambda _key, value: f"{args.prefix}:agg:{value['entity']}",
        value_serializer=lambda value: json.dumps(value["aggregate"]),
    )

    def check(value: dict[str, Any]) -> dict[str, Any]:
        if "_rejected" not in value:
            try:
                pipeline.check(value, value["_topic"])
            except Rejected as exc:
                value["_rejected"] = exc.reason
        return value

    def aggregate(value: dict[str, Any], state: State) -> dict[str, Any]:
        entity = entity_of(value)
        result = pipeline.step(value, value["_topic"], state.get(entity))
        state.set(entity, result.aggregate)
        return {
            "entity": result.entity,
            "aggregate": result.aggregate,
            "output": result.output,
            "alert": result.alert,
        }

    for name in spec.get("subscribe") or spec["input_topics"]:
        source = app.topic(
            name, key_deserializer="bytes", value_deserializer=ObservationDeserializer(pipeline)
        )
        sdf = app.dataframe(source).apply(check)
        sdf.filter(lambda v: "_rejected" in v).apply(lambda v: v["_raw"]).to_topic(dlq)
        accepted = sdf.filter(lambda v: "_rejected" not in v).apply(aggregate, stateful=True)
        accepted.apply(lambda r: r["output"]).to_topic(out)
        accepted.filter(lambda r: r["alert"] is not None).apply(lambda r: r["alert"]).to_topic(alerts)
        accepted.sink(redis_sink)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
