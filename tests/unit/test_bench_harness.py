"""The benchmark harness's pure parts: the input mix, percentiles, profile categories, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import report
from bench.latency import Tracker, percentiles
from bench.profiling import categorise, parse_collapsed, summarise
from bench.run import sizes_for
from bench.workload import generate_mix
from stream_app.config.blueprint import load_blueprint
from stream_app.settings import Settings


def test_mix_is_the_realistic_share_of_alerting_and_invalid_records() -> None:
    mix = generate_mix(load_blueprint(Settings.model_construct()), 3000, keep_meta=True)
    described = mix.describe()
    assert described["records"] == 3000
    assert 0.05 <= described["above_alert_level_share"] <= 0.2
    assert 0.005 <= described["invalid_share"] <= 0.08
    assert set(described["by_reporter"]) >= {"MAE"}
    with_meta = [i for i in mix.items if i.meta is not None]
    assert len(with_meta) == 3000 - mix.invalid
    ids = {i.meta.observation_id for i in with_meta if i.meta}
    assert len(ids) == len(with_meta)


def test_percentiles_count_the_unmatched_as_infinitely_late() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values)["p50"] == 50.0
    assert percentiles(values)["p99"] == 99.0
    late = percentiles(values, missing=5)
    assert late["p95"] == 100.0  # rank 100 of 105
    assert math.isinf(late["p99"])
    assert late["count"] == 100
    assert late["missing"] == 5
    assert math.isnan(percentiles([])["p50"])


@pytest.mark.parametrize(
    ("frames", "category"),
    [
        (["main (x.py:1)", "_read_body (stream_app/wire/codecs.py:141)"], "decode (Avro/JSON, input)"),
        (["run (agents/intake.py:1)", "encode (stream_app/wire/codecs.py:56)"], "encode (Avro, outputs)"),
        (
            ["run (agents/intake.py:1)", "_w3 (<avro vn.gov.reporting.v1.Observation>:12)"],
            "encode (Avro, outputs)",
        ),
        (
            ["process (agents/consolidate.py:1)", "_rlong (stream_app/wire/compiled.py:50)"],
            "decode (Avro/JSON, input)",
        ),
        (
            [
                "run (agents/intake.py:1)",
                "Encoder.encode (/venv/site-packages/redis/_parsers/encoders.py:35)",
            ],
            "redis (client, state store)",
        ),
        (
            ["run (agents/consolidate.py:1)", "apply (stream_app/domain/entity/step.py:61)"],
            "state step (entity, aggregates, periods)",
        ),
        (
            [
                "_drain_messages (stream_app/kafka/lanes.py:1)",
                "wait_first (mode/services.py:7)",
                "wait (asyncio/tasks.py:428)",
            ],
            "Faust consumer, lanes, acks and machinery",
        ),
        (
            ["run_forever (asyncio/base_events.py:1)", "_run (asyncio/events.py:80)"],
            "asyncio event loop (scheduling, epoll)",
        ),
        (["send_batch (stream_app/kafka/producer.py:510)"], "produce (librdkafka producer, publisher)"),
        (
            ["_start_thread (mode/threads.py:1)", "_fetch (stream_app/kafka/rdlanes/thread.py:380)"],
            "Kafka client (fetch: librdkafka driver, aiokafka)",
        ),
        (
            ["Worker.execute_from_commandline (mode/worker.py:264)", "Handle._run (asyncio/events.py:80)"],
            "asyncio event loop (scheduling, epoll)",
        ),
        (["something (elsewhere.py:1)"], "other"),
    ],
)
def test_profile_categories(frames: list[str], category: str) -> None:
    assert categorise(frames) == category


def test_profile_summary_in_microseconds_per_record(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "main (a.py:1);_read_body (stream_app/wire/codecs.py:141) 30\n"
        "main (a.py:1);validate (stream_app/domain/validation.py:60) 10\n"
        "broken line\n",
        encoding="utf-8",
    )
    assert len(parse_collapsed(stacks.read_text(encoding="utf-8"))) == 2
    summary = summarise(stacks, cpu_seconds=2.0, records=10_000)
    assert summary["cpu_us_per_record"] == pytest.approx(200.0)
    first = summary["categories"][0]
    assert first["category"] == "decode (Avro/JSON, input)"
    assert first["us_per_record"] == pytest.approx(150.0)


def test_report_rows_ratios_and_strict_json(tmp_path: Path) -> None:
    results = {
        "peers": {
            "floor": {"records": 1000, "seconds": 0.01, "rate": 100_000.0},
            "naive_faust": {"records": 500, "seconds": 0.5, "rate": 1_000.0},
            "quix": {"skipped": "Quix Streams virtualenv missing"},
        },
        "drain": {
            "records": 1000,
            "seconds": 0.5,
            "rate": 2_000.0,
            "peak_rss_bytes": [100 * 1024 * 1024],
            "redis": {"bytes_of_keys": 1024 * 1024},
        },
        "latency": {
            "seconds": 5.0,
            "observations_measured": 100,
            "sender": {"rate_achieved": 20.0},
            "to_consolidated_ms": percentiles([1.0, 2.0], missing=1),
            "to_alert_ms": percentiles([]),
        },
    }
    rows = report.rows(results)
    by_name = {r["row"]: r for r in rows}
    assert by_name["this worker: drain, 1 worker"]["ratio"] == pytest.approx(0.02)
    assert (
        "skipped" not in by_name["Quix Streams peer"]["note"] or by_name["Quix Streams peer"]["rate"] is None
    )
    text = report.table(rows)
    assert "floor: confluent-kafka consume + decode" in text
    assert "inf" in text  # the unmatched observation shows as infinitely late
    strict = json.dumps(report.json_safe({**results, "table": rows}), allow_nan=False)
    assert "NaN" not in strict


def test_sizes_scale_but_keep_the_offered_load() -> None:
    full, tenth, smoke = sizes_for(1.0, False), sizes_for(0.1, False), sizes_for(1.0, True)
    assert full.drain == 500_000
    assert full.history_span == "2010-01-01:2025-12-31"
    assert tenth.drain == 50_000
    assert tenth.latency_rate == full.latency_rate == 2000.0
    assert smoke.drain < 10_000


def test_verdicts_judge_each_target_from_one_run() -> None:
    mb = 1024 * 1024
    results = {
        "drain": {
            "rate": 8_000.0,
            "records": 50_000,
            "cpu_seconds_from_first_record": 7.0,
            "peak_rss_bytes": [200 * mb],
        },
        "peers": {"quix": {"rate": 5_000.0}, "naive_faust": {"rate": 1_000.0}},
        "scale_out": {"rate": 10_000.0},
        "backfill": {
            "span": "2022-01-01:2025-12-31",
            "produce": {"seconds": 60.0},
            "drain": {"seconds": 300.0, "rate": 6_000.0},
            "live": {"to_alert_ms": {"p99": 1_500.0}},
        },
        "latency": {
            "rate_offered": 2_000.0,
            "to_alert_ms": {"p99": 300.0},
            "worker_peak_rss_bytes": 260 * mb,
        },
        "readers": {"p99_ms_without_readers": 500.0, "p99_ms_with_readers": 560.0},
        "latency_sustainable": {"rate_offered": 1_000.0, "to_alert_ms": {"p99": 150.0}},
        "latency_sustainable_peer": {"rate_offered": 1_000.0, "to_output_ms": {"p99": 200.0}},
        "soak": {"ratio_to_drain": 2.5},
    }
    verdicts = {v["target"]: v["verdict"] for v in report.verdicts(results)}
    assert verdicts == {
        "1 worker / Quix Streams peer": "pass",  # 1.6
        "1 worker / naive Faust": "pass",  # 8.0
        "2 workers / 1 worker": "FAIL",  # 1.25
        "CPU per observation in the drain": "pass",  # 140 µs
        "history / live: backfill drain rate / live drain rate": "FAIL",  # 0.75
        "backfill 2010-2025 produced + drained + settled": "not measured (only 2022-01-01:2025-12-31)",
        "live alert p99 while the backfill drains": "pass",
        "p99 produced -> alert at 2,000/s": "FAIL",
        "p99 produced -> alert at 1,000/s / Quix peer p99": "pass",  # 0.75
        "soak: CPU per record at 300/s / the drain's": "FAIL",  # 2.5
        "worker peak RSS": "FAIL",  # the latency run's 260 MB
        "p99 at 300/s with 20 pages + 50 req/s + 8 API clients (76 req/s) / without": "FAIL",  # 1.12
    }
    assert "FAIL" in report.verdict_table(report.verdicts(results))


def test_tracker_breaks_the_latency_down_per_hop_and_times_a_peer() -> None:
    tracker = Tracker(wall_offset=1000.0)  # wall clock = perf_counter + 1000 s
    item = generate_mix(load_blueprint(Settings.model_construct()), 50, keep_meta=True).items
    sent = next(i for i in item if i.meta is not None)
    assert sent.meta is not None
    tracker.sent(sent, 1.0)  # produced at wall 1001.000
    tracker.internal(sent.meta.observation_id, 1_001_050, 1.080)  # intake took it at +50, read back at +80
    indicator, place = sent.meta.entity
    record = {
        "indicator": indicator,
        "station": place,
        "region": place,
        "latest_event_time": sent.meta.event_ms,
    }
    tracker.consolidated(record, 1.300, produced_ms=1_001_280)  # produced at +280, read at +300
    hops = {hop: values[0] for hop, values in tracker.hops.items()}
    assert hops == pytest.approx({"intake": 50, "to_internal": 30, "internal_to_output": 200, "publish": 20})
    assert sum(hops.values()) == pytest.approx(tracker.to_consolidated[0]) == pytest.approx(300)
    tracker.output(sent.meta.observation_id, 1.040)
    tracker.output(sent.meta.observation_id, 1.090)  # a replayed output counts once
    assert tracker.to_output == pytest.approx([40.0])


def test_report_rows_for_the_peer_latency_the_hops_and_the_soak() -> None:
    hops = {h: percentiles([10.0, 20.0]) for h in ("intake", "to_internal", "internal_to_output", "publish")}
    results = {
        "latency_sustainable": {
            "rate_offered": 1_000.0,
            "seconds": 20.0,
            "observations_measured": 2,
            "sender": {"rate_achieved": 1_000.0},
            "to_consolidated_ms": percentiles([100.0, 200.0]),
            "to_alert_ms": percentiles([300.0]),
            "hops_ms": hops,
            "stages": {"consolidate": {"mean_ms": 120.0}},
        },
        "latency_sustainable_peer": {
            "rate_offered": 1_000.0,
            "seconds": 20.0,
            "observations_measured": 2,
            "sender": {"rate_achieved": 1_000.0},
            "to_output_ms": percentiles([50.0, 150.0]),
            "to_alert_ms": percentiles([]),
        },
        "soak": {
            "rate_offered": 300.0,
            "seconds": 60.0,
            "tick_interval_s": 30.0,
            "sender": {"rate_achieved": 300.0},
            "records": 18_000,
            "worker_cpu_share": 0.6,
            "cpu_us_per_record": 2_000.0,
            "drain_cpu_us_per_record": 200.0,
            "ratio_to_drain": 10.0,
            "worker_rss_bytes": 120 * 1024 * 1024,
            "to_consolidated_ms": percentiles([200.0, 400.0]),
        },
    }
    notes = {r["row"]: r["note"] for r in report.rows(results)}
    assert "consolidate step 120 ms" in notes["  hops at 1,000/s"]
    assert "worker p99 →alert / peer p99 2.00×" in notes["  Quix peer latency at 1,000/s"]
    assert "10.0× the drain's 200" in notes["soak at 300/s, tick 30 s"]
    verdicts = {v["target"]: v["measured"] for v in report.verdicts(results)}
    assert verdicts["p99 produced -> alert at 1,000/s / Quix peer p99"] == pytest.approx(2.0)
