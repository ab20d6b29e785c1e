"""Operating a worker: liveness and readiness probes, consumer lag, feed freshness, rebalances, and two
workers on one host each reporting their own share."""

from __future__ import annotations

import time
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .support import WorkerProcess, free_port, metric_value, observation, probe, produce


def _wait(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _send_aqi(settings: Settings, blueprint: Blueprint, count: int) -> None:
    schema = blueprint.schemas.latest("observation")
    records = [(b"HN-AQ-HOANKIEM", codecs.encode(schema, observation(value=40.0 + i))) for i in range(count)]
    produce(settings, blueprint.input_topic("MAE").name, records)


def test_probes_metrics_and_lag_of_one_worker(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    settings = settings.model_copy(update={"ops_interval_s": 0.5})
    worker = start_worker(settings, STREAM_APP_OPS_INTERVAL_S="0.5")

    status, live = probe(settings, "/livez")
    assert (status, live["live"]) == (200, True)
    _wait(lambda: probe(settings, "/readyz")[0] == 200, what="/readyz 200")
    status, ready = probe(settings, "/readyz")
    assert ready["checks"] == {
        "partitions_assigned": True,
        "kafka": True,
        "redis": True,
        "not_retrying": True,
    }
    assert ready["assigned_partitions"] > 0
    assert probe(settings, "/health")[0] == 200  # the old probe is unchanged

    before = time.time()
    _send_aqi(settings, blueprint, 5)

    def fed() -> bool:
        text = worker.metrics()
        return metric_value(text, "stream_app_reporter_last_accepted_timestamp_seconds", reporter="MAE") > 0

    _wait(fed, what="MAE's feed timestamp")
    text = worker.metrics()
    assert (
        metric_value(text, "stream_app_reporter_last_accepted_timestamp_seconds", reporter="MAE")
        >= before - 1
    )
    assert metric_value(text, "stream_app_event_age_seconds_count", reporter="MAE") == 5
    assert metric_value(text, "stream_app_reporter_feed_interval_seconds", reporter="MAE") == 3 * 3600
    assert metric_value(text, "stream_app_reporter_feed_interval_seconds", reporter="NSMO") == 36 * 3600
    assert metric_value(text, "stream_app_worker_ready") == 1
    assert metric_value(text, "stream_app_dependency_up", dependency="redis") == 1
    assert metric_value(text, "stream_app_dependency_up", dependency="kafka") == 1
    assert metric_value(text, "stream_app_rebalances_total") >= 1
    assert metric_value(text, "stream_app_retrying", operation="redis_commit") == 0  # exists before any retry
    assert metric_value(text, "process_resident_memory_bytes") > 0
    internal = blueprint.topic_by_role("repartition").name
    assert metric_value(text, "stream_app_assigned_partitions", topic=internal) == 4

    # Everything sent was processed and committed: the lag of every owned partition drops to 0.
    input_topic = blueprint.input_topic("MAE").name

    def lag_series() -> dict[tuple[str, str], float]:
        found = {}
        for line in worker.metrics().splitlines():
            if line.startswith("stream_app_consumer_lag_records{"):
                labels = dict(
                    part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
                )
                found[(labels["topic"].strip('"'), labels["partition"].strip('"'))] = float(line.split()[-1])
        return found

    _wait(lambda: any(t == input_topic for t, _ in lag_series()), what="lag series of the input topic")
    _wait(lambda: all(v == 0 for v in lag_series().values()), what="lag back to 0")


def test_two_workers_on_one_host_split_the_partitions_and_report_their_own(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    first: WorkerProcess = start_worker(settings, STREAM_APP_OPS_INTERVAL_S="0.5")
    second_settings = settings.model_copy(update={"web_port": free_port()})
    second: WorkerProcess = start_worker(second_settings, STREAM_APP_OPS_INTERVAL_S="0.5")
    internal = blueprint.topic_by_role("repartition").name

    def split() -> bool:
        counts = [
            metric_value(w.metrics(), "stream_app_assigned_partitions", topic=internal)
            for w in (first, second)
        ]
        return sorted(counts) == [2, 2]

    _wait(split, timeout=45, what="the internal topic's 4 partitions split 2 + 2")
    assert metric_value(first.metrics(), "stream_app_rebalances_total") >= 2  # joined, then the second came
    _wait(lambda: probe(second_settings, "/readyz")[0] == 200, what="second worker ready")
