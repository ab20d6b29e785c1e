"""Prometheus metrics, defined once. Labels are bounded: topic, reporter, reason, kind — never ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double the exposition size and no dashboard or alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_CONSUMED = Counter(
    "stream_app_records_consumed_total",
    "Records read from Kafka, by topic.",
    ["topic"],
    registry=REGISTRY,
)
RECORDS_ACCEPTED = Counter(
    "stream_app_records_accepted_total",
    "Observations that passed validation, by reporter.",
    ["reporter"],
    registry=REGISTRY,
)
RECORDS_REJECTED = Counter(
    "stream_app_records_rejected_total",
    "Records sent to a dead-letter topic, by reporter and reason code.",
    ["reporter", "reason"],
    registry=REGISTRY,
)
RECORDS_PRODUCED = Counter(
    "stream_app_records_produced_total",
    "Records written to Kafka, by topic.",
    ["topic"],
    registry=REGISTRY,
)
OBSERVATIONS_SKIPPED = Counter(
    "stream_app_observations_skipped_total",
    "Observations not applied again because Redis already holds their effects (redelivery).",
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "stream_app_duplicate_observations_total",
    "Observations ignored because the same id and revision was already applied.",
    registry=REGISTRY,
)
ALERTS_EMITTED = Counter(
    "stream_app_alerts_emitted_total",
    "Alert transitions published, by transition.",
    ["transition"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "stream_app_retries_total",
    "Failed infrastructure operations that were retried while the partition waited, by operation.",
    ["operation"],
    registry=REGISTRY,
)
REDIS_APPLY_SECONDS = Histogram(
    "stream_app_redis_apply_seconds",
    "Time to read and commit one batch's state in Redis.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "stream_app_batch_size",
    "Records per processed batch, by agent.",
    ["agent"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "stream_app_end_to_end_latency_seconds",
    "From the input record's Kafka timestamp to its outputs being acknowledged by Kafka.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
RETRYING = Gauge(
    "stream_app_retrying",
    "1 while an operation (redis_load, redis_commit, produce, schema_registry) waits for its dependency.",
    ["operation"],
    registry=REGISTRY,
)
