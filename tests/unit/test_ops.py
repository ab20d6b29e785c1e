"""Pure parts of operating the workers: lag arithmetic, feed intervals, the Alertmanager payloads,
and that the dashboard and the alert rules only name metrics the workers export."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from stream_app.domain.alerting import load_rules
from stream_app.domain.catalogue import load_catalogue
from stream_app.ops import metrics
from stream_app.ops.alertmanager import OpenAlerts, alert_labels
from stream_app.pipeline.probes import feed_intervals, partition_lags
from stream_app.settings import REPO_ROOT, Settings

NOW = datetime(2025, 10, 20, 3, 0, tzinfo=UTC)


class TP(NamedTuple):
    topic: str
    partition: int


def test_lag_is_high_watermark_minus_committed_and_skips_partitions_not_fetched_yet() -> None:
    assignment = {TP("a", 0), TP("a", 1), TP("b", 0), TP("b", 1)}
    highwater = {TP("a", 0): 120, TP("a", 1): 5, TP("b", 0): 7}
    committed = {TP("a", 0): 100, TP("a", 1): 5}
    lags = partition_lags(assignment, highwater.get, committed.get)
    assert [(x.topic, x.partition, x.lag) for x in lags] == [("a", 0, 20), ("a", 1, 0), ("b", 0, 7)]


def test_feed_intervals_come_from_the_absence_rules() -> None:
    settings = Settings.model_construct()  # the repository's data files, whatever the shell holds
    catalogue = load_catalogue(settings.catalogue_dir)
    rulebook = load_rules(settings.catalogue_dir / "rules.toml", catalogue)
    intervals = feed_intervals(catalogue, rulebook)
    assert intervals["MAE"] == 3 * 3600  # VN_AQI and water levels: 3 h
    assert intervals["NSMO"] == 36 * 3600  # daily output: a day and a half
    assert "MOF" not in intervals  # periodic reports only: the late_report rule's business


def _alert(**overrides: Any) -> dict[str, Any]:
    alert = {
        "alert_id": "alr-1",
        "alert_key": "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM",
        "rule": "levels:ENV.AQI",
        "rule_kind": "levels",
        "domain": "environment",
        "event_type": "TRANSITION",
        "transition": "FIRING",
        "indicator": "ENV.AQI",
        "reporter": "MAE",
        "region": "01",
        "station": "HN-AQ-HOANKIEM",
        "value": 175.0,
        "threshold": 151.0,
        "level": 3,
        "level_code": "BAD",
        "level_name_vi": "Xấu",
        "level_name_en": "bad",
        "colour": "#FF0000",
        "detail": "",
        "event_time": NOW - timedelta(minutes=5),
    }
    alert.update(overrides)
    return alert


def test_labels_carry_domain_level_region_reporter_and_the_origin() -> None:
    labels = alert_labels(_alert(), "vn-reporting-stream")
    assert labels == {
        "alertname": "center:levels:ENV.AQI",
        "source": "stream-app",
        "origin": "vn-reporting-stream",
        "domain": "environment",
        "rule": "levels:ENV.AQI",
        "rule_kind": "levels",
        "indicator": "ENV.AQI",
        "reporter": "MAE",
        "region": "01",
        "station": "HN-AQ-HOANKIEM",
        "level": "BAD",
        "level_index": "3",
    }
    assert "station" not in alert_labels(_alert(station=None), "x")


def test_open_alerts_fire_change_level_and_resolve() -> None:
    book = OpenAlerts("g", resend_s=60)
    key = _alert()["alert_key"]

    [fired] = book.apply(key, _alert(), NOW)
    assert fired["endsAt"] == "2025-10-20T03:04:00Z"  # four resend intervals ahead
    assert fired["startsAt"] == "2025-10-20T02:55:00Z"
    assert fired["annotations"]["summary_vi"] == "ENV.AQI tại HN-AQ-HOANKIEM: Xấu"

    # Escalation: the old level's alert ends now, the new one is open.
    old, new = book.apply(key, _alert(transition="ESCALATED", level=4, level_code="VERY_BAD"), NOW)
    assert (old["labels"]["level"], old["endsAt"]) == ("BAD", "2025-10-20T03:00:00Z")
    assert (new["labels"]["level"], new["endsAt"]) == ("VERY_BAD", "2025-10-20T03:04:00Z")
    assert [a["labels"]["level"] for a in book.refresh(NOW)] == ["VERY_BAD"]

    # The tombstone of the compacted topic resolves it; a second one changes nothing.
    [resolved] = book.apply(key, None, NOW)
    assert (resolved["labels"]["level"], resolved["endsAt"]) == ("VERY_BAD", "2025-10-20T03:00:00Z")
    assert book.apply(key, None, NOW) == []
    assert book.refresh(NOW) == []


def test_a_closing_directive_ends_the_alert_and_other_directives_keep_it_open() -> None:
    book = OpenAlerts("g", resend_s=60)
    key = _alert()["alert_key"]
    book.apply(key, _alert(), NOW)
    [acknowledged] = book.apply(key, _alert(event_type="ACKNOWLEDGE", acknowledged_by="duty officer"), NOW)
    assert acknowledged["annotations"]["acknowledged_by"] == "duty officer"
    assert acknowledged["endsAt"] == "2025-10-20T03:04:00Z"
    [closed] = book.apply(key, _alert(event_type="CLOSE"), NOW)
    assert closed["endsAt"] == "2025-10-20T03:00:00Z"


# Recorded by Prometheus itself or by deploy/prometheus/rules/, not by the workers.
NOT_EXPORTED = {"up", "ALERTS", "time", "vector"}
# Exported by the center's screen (its own process and scrape job), which StreamAppScreenStale watches.
SCREEN_EXPORTED = {
    "stream_app_screen_reader_lag_seconds",
    "stream_app_screen_ready",
    "stream_app_screen_pages_connected",
    "stream_app_screen_events_pushed_total",
}


def _exported_names() -> set[str]:
    names = set()
    for metric in metrics.REGISTRY.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names.update(metric.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def test_dashboard_and_rules_only_name_metrics_the_workers_export() -> None:
    rules = (REPO_ROOT / "deploy/prometheus/rules/stream-app.yml").read_text(encoding="utf-8")
    recorded = set(re.findall(r"record: (\S+)", rules))
    dashboard = json.loads((REPO_ROOT / "deploy/grafana/stream-app.json").read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    known = _exported_names() | recorded | NOT_EXPORTED | SCREEN_EXPORTED
    for text in [rules, *queries]:
        for name in re.findall(r"\b((?:stream_app|process)_[a-z_]+|stream_app:[a-z_:0-9]+)", text):
            assert name in known, f"{name} is not a metric the workers export"


def test_observing_many_amounts_at_once_equals_observing_each() -> None:
    from prometheus_client import CollectorRegistry, Histogram  # noqa: PLC0415 - this test's alone

    from stream_app.ops.metrics import observe_many  # noqa: PLC0415

    registry = CollectorRegistry()
    one = Histogram("one_seconds", "", ["l"], buckets=(0.1, 0.5, 1.0, 5.0), registry=registry)
    many = Histogram("many_seconds", "", ["l"], buckets=(0.1, 0.5, 1.0, 5.0), registry=registry)
    amounts = [0.0, 0.1, 0.1000001, 0.5, 0.7, 1.0, 4.9, 5.0, 7.5, 1e9, 0.05, -1.0, float("inf"), float("nan")]
    for amount in amounts:
        one.labels("x").observe(amount)
    observe_many(many.labels("x"), amounts)
    observe_many(many.labels("x"), [])

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        (family,) = [m for m in registry.collect() if m.name == name]
        return [(s.name.removeprefix(name), s.labels, s.value) for s in family.samples]

    batched, single = samples("many_seconds"), samples("one_seconds")
    assert [s[:2] for s in batched] == [s[:2] for s in single]
    assert all(
        a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2])) for a, b in zip(batched, single, strict=True)
    )
