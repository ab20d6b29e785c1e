"""The cost of a scrape: rendering /metrics of a worker whose every bounded label set is in use.

The workers' labels are bounded by the catalogue (reporters, reasons, topics, domains), not by
regions or indicators, so a busy worker for 34 regions × 30 indicators exports the same series as
a quiet one; this fills every label set the catalogue allows, and for comparison measures what
1,020 per-(indicator, region) series would add. Run with ``-s`` to see the numbers:

    .venv/bin/pytest tests/unit/test_scrape_cost.py -s
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from stream_app.config.topics import load_topics
from stream_app.domain import reasons as codes
from stream_app.domain.catalogue import load_catalogue
from stream_app.ops import metrics
from stream_app.settings import Settings

REGIONS = 34
INDICATORS = 30
TRANSITIONS = ("FIRING", "ESCALATED", "DEESCALATED", "RESOLVED")
RULE_KINDS = ("levels", "rate_of_change", "deviation", "absence", "late_report")


def _render_ms(registry: CollectorRegistry, rounds: int = 20) -> tuple[float, int]:
    generate_latest(registry)
    start = time.perf_counter()
    for _ in range(rounds):
        body = generate_latest(registry)
    return (time.perf_counter() - start) / rounds * 1000, len(body)


def _fill_worker_registry() -> None:
    settings = Settings.model_construct()
    catalogue = load_catalogue(settings.catalogue_dir)
    topics = load_topics(settings.topics_file, "")
    reasons = codes.emitted_by(codes.INTAKE)  # every code a reporter's record may be refused with
    domains = sorted({i.domain for i in catalogue.indicators.values()})
    for reporter in catalogue.reporters:
        metrics.RECORDS_ACCEPTED.labels(reporter).inc()
        metrics.EVENT_AGE_SECONDS.labels(reporter).observe(30)
        metrics.REPORTER_LAST_ACCEPTED.labels(reporter).set(time.time())
        metrics.REPORTER_FEED_INTERVAL.labels(reporter).set(10800)
        for reason in reasons:
            metrics.RECORDS_REJECTED.labels(reporter, reason).inc()
    for spec in topics:
        metrics.RECORDS_CONSUMED.labels(spec.name).inc()
        metrics.RECORDS_PRODUCED.labels(spec.name).inc()
        metrics.ASSIGNED_PARTITIONS.labels(spec.name).set(spec.partitions)
        for partition in range(spec.partitions):
            metrics.CONSUMER_LAG.labels(spec.name, str(partition)).set(3)
    for domain in domains:
        for kind in RULE_KINDS:
            for transition in TRANSITIONS:
                metrics.ALERT_TRANSITIONS.labels(domain, kind, transition).inc()
    for agent in ("intake", "consolidate"):
        metrics.BATCH_SIZE.labels(agent).observe(100)
    metrics.END_TO_END_SECONDS.observe(0.05)
    metrics.REDIS_APPLY_SECONDS.observe(0.002)


def test_rendering_metrics_of_a_fully_labelled_worker_is_cheap() -> None:
    _fill_worker_registry()
    worker_ms, worker_bytes = _render_ms(metrics.REGISTRY)
    series = sum(len(m.samples) for m in metrics.REGISTRY.collect())

    per_entity = CollectorRegistry()
    gauge = Gauge("entity_latest_value", "for comparison only", ["indicator", "region"], registry=per_entity)
    for indicator in range(INDICATORS):
        for region in range(REGIONS):
            gauge.labels(f"IND.{indicator:02d}", f"{region:02d}").set(1.0)
    entity_ms, entity_bytes = _render_ms(per_entity)

    print(
        f"\nscrape cost: worker registry {series} samples, {worker_bytes / 1024:.0f} KiB, {worker_ms:.2f} ms"
        f" per render; {REGIONS}x{INDICATORS} per-entity gauges would add {entity_bytes / 1024:.0f} KiB,"
        f" {entity_ms:.2f} ms"
    )
    assert worker_ms < 100  # generous for a shared 2-core CI machine; typically a few ms
