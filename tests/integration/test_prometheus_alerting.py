"""End to end with the real Prometheus and Alertmanager: a worker stops, the production rule fires,
and Alertmanager's API shows the alert."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings

from .monitoring import Prometheus, alertmanager_alerts, fast_rules, start_prometheus


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(targets: list[str], tag: str) -> Prometheus:
        prometheus = start_prometheus(tmp_path, targets, fast_rules(tmp_path), {"env": tag})
        started.append(prometheus)
        return prometheus

    yield start
    for prometheus in started:
        prometheus.stop()


def test_a_stopped_worker_fires_worker_down_in_alertmanager(
    settings: Settings, blueprint: Blueprint, start_worker: Any, prometheus_for: Any
) -> None:
    worker = start_worker(settings)
    target = f"127.0.0.1:{settings.web_port}"
    tag = settings.topic_namespace.rstrip(".")
    prometheus = prometheus_for([target], tag)
    prometheus.wait_for('up{job="stream-app"} == 1')
    prometheus.wait_for("stream_app_worker_ready == 1")
    assert not alertmanager_alerts(env=tag, alertname="StreamAppWorkerDown")

    worker.stop()
    prometheus.wait_for('ALERTS{alertname="StreamAppWorkerDown", alertstate="firing"}')
    deadline = time.monotonic() + 30
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not alerts:
        alerts = alertmanager_alerts(env=tag, alertname="StreamAppWorkerDown")
        time.sleep(0.5)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["labels"]["instance"] == target
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"] == f"{settings.runbook_url}#streamappworkerdown"
    # The only worker is gone, so "no worker up" fires too, and Alertmanager inhibits the per-worker
    # alert by it (deploy/alertmanager/alertmanager.yml), within this environment only.
    none_up = alertmanager_alerts(env=tag, alertname="StreamAppNoWorkerUp")
    assert [a["status"]["state"] for a in none_up] == ["active"]
    assert alert["status"]["state"] == "suppressed"
    assert alert["status"]["inhibitedBy"] == [none_up[0]["fingerprint"]]
