"""Alert latency on the real local services: observation produced → its alert consumed.

    .venv/bin/python -m bench.alert_latency --rate 200 --duration 30

In a fresh topic namespace and Redis key prefix (created here, deleted at the end), one worker
process runs as in production (default batching) while observations of every air-quality and
hydrological station of the catalogue are sent at a steady rate to MAE's input topic. A fixed share
of them crosses the station's alert threshold and back (``--alert-share``, default 0.1: one
observation in ten causes a FIRING or a RESOLVED). The produce time of every observation is
recorded; a consumer reads the center's alerts topic and matches each alert to the observation
that caused it (its ``observation_id``), giving produce → alert consumed latency. The alerts to
expect are computed with the pure engine (``stream_app.domain.alerting``), so the run knows when it has
them all and reports any missing.

Prints the rate, the number of alerts and p50/p95/p99/max latency in ms, and writes the result as
JSON to ``bench-results/alert_latency.json``. Loopback services only; bounded in rate, duration and
count; stops by itself (Ctrl-C stops it early, cleaning up the same way).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import math
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.alerting import (
    BucketHistory,
    LevelsParams,
    RateParams,
    Rule,
    RuleState,
    load_rules,
    on_observation,
)
from stream_app.domain.catalogue import load_catalogue
from stream_app.kafka import registry, topics
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.launch import Launched, start_worker
from stream_app.wire import codecs

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench-results" / "alert_latency.json"
KINDS = {"air_quality": "ENV.AQI", "hydrological": "HYD.WATER_LEVEL"}
REPORTER = "MAE"
MAX_RATE = 20_000.0
MAX_DURATION_S = 600.0
MAX_COUNT = 2_000_000
EVENT_STEP_MS = 1_000  # event time between two observations of one station


# --- the feed -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    """One station's feed: its levels rule, and a calm and an alerting value around the threshold."""

    station: str
    region: str
    indicator: str
    unit: str
    rule: Rule
    calm: float  # below the alert bound less the hysteresis margin: resolves at once
    high: float  # inside the first alert level
    spread: float  # noise either side, keeping both values where they are
    run: int  # consecutive high readings needed to fire (the rule's min_count)


def _feeds(settings: Settings) -> list[Feed]:
    """A feed for every air-quality and hydrological station with a levels rule."""
    catalogue = load_catalogue(settings.catalogue_dir)
    rules_file = getattr(settings, "rules_file", None) or settings.catalogue_dir / "rules.toml"
    book = load_rules(Path(rules_file), catalogue)
    feeds = []
    for station in sorted(catalogue.stations.values(), key=lambda s: s.code):
        indicator = KINDS.get(station.kind)
        if indicator is None:
            continue
        rules = book.rules_for(indicator, station.region, station.code)
        levels_rule = next((r for r in rules if isinstance(r.params, LevelsParams)), None)
        if levels_rule is None or not isinstance(levels_rule.params, LevelsParams):
            continue
        params = levels_rule.params
        if params.direction != "above" or params.min_minutes > 0 or levels_rule.alert_from < 1:
            continue  # not the simple shape this feed knows how to cross
        bound = levels_rule.levels[levels_rule.alert_from].lower
        upper = (
            levels_rule.levels[levels_rule.alert_from + 1].lower
            if levels_rule.alert_from + 1 < len(levels_rule.levels)
            else bound * 1.5
        )
        # Half-way into the first alert level, but never a swing a rate_of_change rule would see.
        half = (upper - bound) / 2
        rises = [r.params.change for r in rules if isinstance(r.params, RateParams)]
        if rises:
            half = min(half, (0.8 * min(rises) - params.hysteresis) / 2)
        if half <= 0:
            continue
        feeds.append(
            Feed(
                station=station.code,
                region=station.region,
                indicator=indicator,
                unit=catalogue.indicators[indicator].unit,
                rule=levels_rule,
                calm=bound - params.hysteresis - half,
                high=bound + half,
                spread=half / 4,
                run=params.min_count,
            )
        )
    if not feeds:
        raise SystemExit("no air-quality or hydrological station with a levels rule in the catalogue")
    return feeds


@dataclass(frozen=True)
class Planned:
    """One observation of the run."""

    feed: Feed
    observation_id: str
    value: float
    event_time: int


def _plan(
    feeds: list[Feed], count: int, *, alert_share: float, start_ms: int, tag: str, seed: int
) -> list[Planned]:
    """``count`` observations, round robin over the stations. Each station repeats a cycle of
    ``round(2 / alert_share)`` readings: ``run`` high ones (the last fires) then calm ones (the first
    resolves), so ``alert_share`` of all observations cause an alert. Cycles are staggered across
    stations; event times step by one second per station and end before ``start_ms``."""
    rng = random.Random(seed)
    per_station = math.ceil(count / len(feeds)) + 1
    base_ms = start_ms - 60_000 - per_station * EVENT_STEP_MS
    out = []
    for n in range(count):
        i, j = n % len(feeds), n // len(feeds)
        feed = feeds[i]
        cycle = max(feed.run + 1, round(2 / alert_share))
        phase = (j + i * cycle // len(feeds)) % cycle
        centre = feed.high if phase < feed.run else feed.calm
        value = round(centre + rng.uniform(-feed.spread, feed.spread), 3)
        out.append(Planned(feed, f"bench-{tag}-{n:07d}", value, base_ms + (j + 1) * EVENT_STEP_MS))
    return out


def _expected(planned: list[Planned], warmup: list[Planned]) -> dict[tuple[str, str], str]:
    """(observation id, rule id) -> transition, as the pure engine computes them from a fresh state."""
    states: dict[str, RuleState] = {}
    out = {}
    for item in [*warmup, *planned]:
        state = states.setdefault(item.feed.station, RuleState())
        verdict = on_observation(
            item.feed.rule,
            state,
            value=item.value,
            event_time_ms=item.event_time,
            history=BucketHistory({}),
            now_ms=item.event_time,
        )
        if verdict.transition is not None:
            out[(item.observation_id, item.feed.rule.rule_id)] = str(verdict.transition.value)
    return out


def _record(item: Planned, now_ms: int) -> dict[str, Any]:
    return {
        "observation_id": item.observation_id,
        "revision": 0,
        "reporter": REPORTER,
        "indicator": item.feed.indicator,
        "region": item.feed.region,
        "station": item.feed.station,
        "value": item.value,
        "unit": item.feed.unit,
        "event_time": item.event_time,
        "report_time": max(now_ms, item.event_time),
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }


# --- services -----------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_loopback(settings: Settings) -> None:
    for server in settings.kafka_bootstrap.split(","):
        host = server.strip().rsplit(":", 1)[0]
        if not _loopback(host):
            raise SystemExit(f"Kafka bootstrap {server!r} is not loopback: this benchmark runs locally only")
    redis_host = urlsplit(settings.redis_url.get_secret_value()).hostname or ""
    if not _loopback(redis_host):
        raise SystemExit("the Redis URL is not loopback: this benchmark runs locally only")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_worker(workdir: Path, log_path: Path, log_level: str) -> Launched:
    env = {**os.environ, "STREAM_APP_LOG_FORMAT": "json", "STREAM_APP_LOG_LEVEL": log_level}
    return start_worker(env, log_path, cwd=workdir)  # its own working directory: Faust writes data there


def _delete_namespace(settings: Settings, blueprint: Blueprint) -> None:
    admin = AdminClient({**confluent_config(settings), "log_level": 3})
    for future in admin.delete_topics([t.name for t in blueprint.topics], operation_timeout=30).values():
        with contextlib.suppress(Exception):  # best effort: a throwaway namespace
            future.result()
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        client.delete(key)


def _stations_applied(settings: Settings, stations: list[str]) -> bool:
    """Whether every station has state in Redis (the worker is assigned and processing)."""
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    keys = [k.decode() for k in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000)]
    return all(any(station in key for key in keys) for station in stations)


def _worker_latency(settings: Settings) -> dict[str, float] | None:
    """The worker's own input → outputs acknowledged latency, from its /metrics (mean only)."""
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = {}
    for line in text.splitlines():
        for suffix in ("_sum", "_count"):
            if line.startswith(f"stream_app_end_to_end_latency_seconds{suffix} "):
                found[suffix] = float(line.rsplit(" ", 1)[1])
    if found.get("_count"):
        return {"records": found["_count"], "mean_ms": 1000 * found["_sum"] / found["_count"]}
    return None


# --- the alerts consumer ------------------------------------------------------------------------


@dataclass
class AlertReader:
    """Reads the alerts topic from the beginning in a thread, noting when each alert arrived."""

    settings: Settings
    blueprint: Blueprint
    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    assigned: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        topic = self.blueprint.topic_by_role("alerts").name
        resolve = registry.from_settings(self.settings, self.blueprint.schemas)  # alerts in either framing
        consumer = Consumer(
            {
                **confluent_config(self.settings),
                "group.id": f"bench-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "log_level": 3,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            self.assigned.set()
            while not self.stop.is_set():
                message = consumer.poll(0.05)
                if message is None:
                    continue
                arrived = time.perf_counter()
                if message.error() is not None:
                    continue
                try:
                    record = codecs.decode(self.blueprint.schemas, "alert", message.value() or b"", resolve)
                except Exception as exc:  # reported in the result, never fatal to the run
                    self.errors.append(repr(exc))
                    continue
                with self.lock:
                    self.seen.append((arrived, record))
        finally:
            self.assigned.set()
            consumer.close()

    def snapshot(self) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return list(self.seen)


# --- the run ------------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.alert_latency", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--rate", type=float, default=200.0, help="observations per second (default 200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sending (default 30)")
    parser.add_argument(
        "--alert-share",
        type=float,
        default=0.1,
        help="share of observations that cause an alert (default 0.1)",
    )
    parser.add_argument("--drain", type=float, default=30.0, help="longest wait for the last alerts, s (30)")
    parser.add_argument("--seed", type=int, default=7, help="noise of the values (default 7)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON result (bench-results/alert_latency.json)"
    )
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}]")
    if args.rate * args.duration > MAX_COUNT:
        parser.error(f"--rate × --duration must be at most {MAX_COUNT} observations")
    if not 0 < args.alert_share <= 0.5:
        parser.error("--alert-share must be in (0, 0.5]")
    if not 0 < args.drain <= 300:
        parser.error("--drain must be in (0, 300]")
    return args


@dataclass
class Scenario:
    """Everything decided before the first observation is sent."""

    settings: Settings
    blueprint: Blueprint
    feeds: list[Feed]
    planned: list[Planned]
    warmup: list[Planned]
    expected: dict[tuple[str, str], str]


@dataclass
class Sending:
    """What the sender did."""

    produced_at: dict[str, float] = field(default_factory=dict)  # observation id -> perf_counter()
    failures: list[str] = field(default_factory=list)
    seconds: float = math.nan
    behind_max_s: float = 0.0

    def delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))


def _scenario(args: argparse.Namespace) -> Scenario:
    """A fresh namespace for topics and consumer group and a fresh Redis key prefix, seen by this
    process and inherited by the worker; the stations, the observations and the alerts expected."""
    tag = uuid.uuid4().hex[:10]
    os.environ["STREAM_APP_TOPIC_NAMESPACE"] = f"bench{tag}."
    os.environ["STREAM_APP_REDIS_KEY_PREFIX"] = f"bench{tag}"
    os.environ["STREAM_APP_WEB_HOST"] = "127.0.0.1"
    os.environ["STREAM_APP_WEB_PORT"] = str(_free_port())
    settings = Settings()
    _check_loopback(settings)
    blueprint = load_blueprint(settings)
    feeds = _feeds(settings)
    count = max(1, round(args.rate * args.duration))
    planned = _plan(
        feeds, count, alert_share=args.alert_share, start_ms=int(time.time() * 1000), tag=tag, seed=args.seed
    )
    # One calm reading per station, before the others in event time: measuring starts once the
    # worker has applied them all, so its start-up and group join are not measured.
    warmup = [
        Planned(feed, f"bench-{tag}-warmup-{feed.station}", feed.calm, planned[0].event_time - 60_000)
        for feed in feeds
    ]
    return Scenario(settings, blueprint, feeds, planned, warmup, _expected(planned, warmup))


def _produce(scenario: Scenario, producer: Producer, item: Planned, sending: Sending) -> None:
    value = codecs.encode(
        scenario.blueprint.schemas.latest("observation"), _record(item, int(time.time() * 1000))
    )
    sending.produced_at[item.observation_id] = time.perf_counter()
    producer.produce(
        scenario.blueprint.input_topic(REPORTER).name,
        key=item.feed.station.encode(),
        value=value,
        on_delivery=sending.delivered,
    )


def _warm_up(scenario: Scenario, producer: Producer, worker: Launched) -> None:
    """Send the warm-up readings and wait until the worker has applied every one."""
    ignored = Sending()
    for item in scenario.warmup:
        _produce(scenario, producer, item, ignored)
    producer.flush(30)
    deadline = time.monotonic() + 60
    stations = [feed.station for feed in scenario.feeds]
    while not _stations_applied(scenario.settings, stations):
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"the worker did not apply the warm-up readings:\n{worker.log_tail()}")
        time.sleep(0.1)


def _send(scenario: Scenario, producer: Producer, rate: float) -> Sending:
    """Steady sending: observation n is due at t0 + n / rate (a late sender catches up)."""
    sending = Sending()
    t0 = time.perf_counter()
    for n, item in enumerate(scenario.planned):
        delay = t0 + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            sending.behind_max_s = max(sending.behind_max_s, -delay)
        _produce(scenario, producer, item, sending)
        producer.poll(0)
    sending.seconds = time.perf_counter() - t0
    if producer.flush(30) != 0:
        sending.failures.append("observations still undelivered 30 s after the last was sent")
    return sending


def _drain(
    scenario: Scenario, sending: Sending, reader: AlertReader, worker: Launched, seconds: float
) -> None:
    """Wait until every alert expected has arrived, the worker died, or ``seconds`` passed."""
    wanted = {key for key in scenario.expected if key[0] in sending.produced_at}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and worker.alive():
        if wanted <= {(r["observation_id"], r["rule"]) for _, r in reader.snapshot()}:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # anything unexpected, still in flight


def _run(args: argparse.Namespace, scenario: Scenario, workdir: Path) -> dict[str, Any]:
    settings = scenario.settings
    log_path = args.out.parent / "alert_latency-worker.log"
    worker = _start_worker(workdir, log_path, args.log_level)
    reader = AlertReader(settings, scenario.blueprint)
    thread = threading.Thread(target=reader.run, name="alert-reader", daemon=True)
    try:
        worker.wait_ready()
        thread.start()
        reader.assigned.wait(15)
        producer = Producer(
            {
                **confluent_config(settings),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
            }
        )
        _warm_up(scenario, producer, worker)
        cpu_before, wall_before = worker.cpu_seconds(), time.perf_counter()
        sending = _send(scenario, producer, args.rate)
        _drain(scenario, sending, reader, worker, args.drain)
        busy = (worker.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
        worker_side = _worker_latency(settings)
        alive = worker.alive()
    finally:
        reader.stop.set()
        thread.join(15)
        worker.stop()
    result = _summarise(args, scenario, sending, reader)
    result["worker"] = {
        "alive_at_end": alive,
        "cpu_share": busy,  # CPU seconds per second from the first observation to the last alert
        "self_reported_latency": worker_side,
        "log": _shown(log_path),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    scenario = _scenario(args)
    print(
        f"alert latency: {len(scenario.feeds)} stations, {len(scenario.planned)} observations at "
        f"{args.rate:g}/s for {args.duration:g} s, {len(scenario.expected)} alerts expected; "
        f"namespace {scenario.settings.topic_namespace}",
        flush=True,
    )
    topics.apply(scenario.settings, scenario.blueprint.topics)
    try:
        # Its own working directory for the worker: Faust writes a data directory there.
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as workdir:
            result = _run(args, scenario, Path(workdir))
    finally:
        _delete_namespace(scenario.settings, scenario.blueprint)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")
    latency, alerts = result["latency_ms"], result["alerts"]
    print(
        f"rate: {result['rate_achieved']:.1f} obs/s achieved of {args.rate:g} requested "
        f"({result['observations']} observations in {result['send_seconds']:.1f} s)"
    )
    print(
        f"alerts: {alerts['matched']} matched to their observation ({alerts['consumed']} consumed, "
        f"{alerts['expected']} expected, {alerts['missing']} missing, {alerts['unexpected']} unexpected, "
        f"{alerts['duplicates']} duplicates)"
    )
    print(
        "latency produce -> alert consumed (ms): "
        f"p50 {latency['p50']:.1f}  p95 {latency['p95']:.1f}  p99 {latency['p99']:.1f}  "
        f"max {latency['max']:.1f}  (mean {latency['mean']:.1f}, min {latency['min']:.1f})"
    )
    trend = "  ".join(f"{int(s['sent_from_s'])}s:{s['p50']:.0f}" for s in result["latency_over_time_ms"])
    print(f"p50 by 5 s of sending (ms): {trend}; worker CPU {result['worker']['cpu_share']:.0%} of a core")
    print(f"result written to {_shown(args.out)}")
    ok = (
        result["produce_failures"] == 0
        and alerts["missing"] == 0
        and alerts["unexpected"] == 0
        and alerts["matched"] > 0
        and result["worker"]["alive_at_end"]
    )
    return 0 if ok else 1


def _summarise(
    args: argparse.Namespace, scenario: Scenario, sending: Sending, reader: AlertReader
) -> dict[str, Any]:
    """Match each alert (first copy of each alert id) to its observation's produce time."""
    latencies: list[float] = []
    over_time: dict[int, list[float]] = {}  # 5 s slices of the sending: does latency grow?
    start = min(sending.produced_at.values(), default=0.0)
    by_rule: dict[str, int] = {}
    firsts: dict[str, dict[str, Any]] = {}
    unexpected = duplicates = 0
    consumed = reader.snapshot()
    for arrived, record in consumed:
        if record["alert_id"] in firsts:
            duplicates += 1
            continue
        firsts[record["alert_id"]] = record
        sent = sending.produced_at.get(record["observation_id"])
        if sent is None:
            continue  # a warm-up reading, or a timer rule
        latencies.append(1000 * (arrived - sent))
        over_time.setdefault(int((sent - start) // 5), []).append(latencies[-1])
        by_rule[record["rule"]] = by_rule.get(record["rule"], 0) + 1
        if scenario.expected.get((record["observation_id"], record["rule"])) != record["transition"]:
            unexpected += 1
    got = {(r["observation_id"], r["rule"]) for r in firsts.values()}
    wanted = {key for key in scenario.expected if key[0] in sending.produced_at}
    latencies.sort()
    settings = scenario.settings
    return {
        "benchmark": "alert_latency",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m bench.alert_latency", *sys.argv[1:]]),
        "rate_requested": args.rate,
        "rate_achieved": len(sending.produced_at) / sending.seconds if sending.seconds > 0 else math.nan,
        "duration_requested_s": args.duration,
        "send_seconds": sending.seconds,
        "sender_max_behind_ms": 1000 * sending.behind_max_s,
        "observations": len(sending.produced_at),
        "produce_failures": len(sending.failures),
        "alert_share": args.alert_share,
        "stations": [
            {
                "station": f.station,
                "indicator": f.indicator,
                "rule": f.rule.rule_id,
                "calm": f.calm,
                "high": f.high,
            }
            for f in scenario.feeds
        ],
        "alerts": {
            "consumed": len(consumed),
            "distinct": len(firsts),
            "matched": len(latencies),
            "expected": len(wanted),
            "missing": len(wanted - got),
            "unexpected": unexpected,
            "duplicates": duplicates,
            "by_rule": by_rule,
            "decode_errors": len(reader.errors),
        },
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "p99": _percentile(latencies, 99),
            "max": latencies[-1] if latencies else math.nan,
            "min": latencies[0] if latencies else math.nan,
            "mean": sum(latencies) / len(latencies) if latencies else math.nan,
        },
        "latency_over_time_ms": [
            {
                "sent_from_s": 5 * n,
                "alerts": len(values),
                "p50": _percentile(sorted(values), 50),
                "max": max(values),
            }
            for n, values in sorted(over_time.items())
        ],
        "setup": {
            "kafka_bootstrap": settings.kafka_bootstrap,
            "batch_max": settings.batch_max,
            "batch_within_s": settings.batch_within_s,
            "namespace": settings.topic_namespace,
            "python": sys.version.split()[0],
            "host": socket.gethostname(),
            "cpus": os.cpu_count(),
        },
    }


def _json_safe(value: Any) -> Any:
    """NaN (no latency measured) as null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
