"""Every query of the Grafana dashboard (deploy/grafana/stream-app.json) is valid PromQL over metrics
that exist: evaluated against a real Prometheus scraping a worker that has seen traffic, each returns
series."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from stream_app.config.blueprint import Blueprint
from stream_app.settings import Settings
from stream_app.wire import codecs

from .monitoring import DASHBOARD, fast_rules, start_prometheus
from .support import observation, produce


def dashboard_queries(instance: str) -> list[tuple[str, str]]:
    """(panel title, expression) of every target, as Grafana sends it with every environment ("All":
    the variable's allValue) and one worker chosen, ``$__rate_interval`` made concrete."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    values = {"$__rate_interval": "1m", "$env": ".*", "$instance": instance}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in values.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_query_returns_series(
    settings: Settings, blueprint: Blueprint, start_worker: Any, tmp_path: Path
) -> None:
    start_worker(settings)
    prometheus = start_prometheus(
        tmp_path, [f"127.0.0.1:{settings.web_port}"], fast_rules(tmp_path), {"env": "dashboard-test"}
    )
    try:
        prometheus.wait_for('up{job="stream-app"} == 1')
        schema = blueprint.schemas.latest("observation")
        start = int(time.time() * 1000) - 30 * 60_000
        readings = [observation(value=v, event_time=start + i * 60_000) for i, v in enumerate([40, 170, 175])]
        # and one from a year ago: a late value, for the aggregates' panels
        readings.append(observation(value=60, event_time=start - 365 * 24 * 3_600_000))
        records = [(b"HN-AQ-HOANKIEM", codecs.encode(schema, r)) for r in readings]
        records.append((b"HN-AQ-HOANKIEM", b"not an observation"))  # a dead letter
        produce(settings, blueprint.input_topic("MAE").name, records)
        # rate() needs two samples of a series: wait until the last series to appear has them.
        prometheus.wait_for("count_over_time(stream_app_alert_transitions_total[1m]) >= 2")
        prometheus.wait_for("stream_app:latency_slo_errors:ratio_rate5m")

        queries = dashboard_queries(f"127.0.0.1:{settings.web_port}")
        assert len(queries) >= 20
        empty = [(title, expr) for title, expr in queries if not prometheus.query(expr)]
        assert not empty, f"dashboard queries without series: {empty}"
    finally:
        prometheus.stop()
