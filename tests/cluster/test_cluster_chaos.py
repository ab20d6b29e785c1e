"""Faults on the cluster profile (``make chaos-cluster``): three brokers, a Redis Cluster of three
primaries with a replica each, three workers, and a continuous stream of ~200,000 observations with
duplicates, corrections and late records (``ground_truth.generate`` with a longer hourly span).

While the stream flows, one after the other: a rolling restart of every broker; a SIGKILL of the broker
leading the most partitions; the Redis primary holding the applied marks killed and its replica
promoted; a worker SIGSTOPped past its session timeout, then resumed (a zombie: the offset-in-commit
rule refuses its stale writes, ``stream_app_state_commits_fenced_total``); a rebalance storm
1 -> 3 -> 2 -> 1 workers. Afterwards every aggregate, roll-up, consolidated record and dead letter
equals the independent ground truth, every alert transition is there once by id (copies identical,
each alert's transitions a chain), no partition lags. Figures per fault (records applied when it hit,
recovery time, the longest gap in alert output) go to ``.local/reports/cluster_chaos.json``.

Runs only against the cluster profile (``deploy/local/cluster up`` and its ``env admin``): elsewhere
it is skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka import acl, topics
from stream_app.kafka.config import confluent_config
from stream_app.settings import REPO_ROOT, Settings
from stream_app.tools.launch import command, spawn
from stream_app.wire import codecs
from tests.integration import ground_truth as gt
from tests.integration.conftest import principal_env
from tests.integration.support import (
    LOADING_TROUBLE,
    WorkerProcess,
    decode_public,
    free_port,
    group_lag,
    metric_value,
    settings_env,
    to_the_end,
    wait_until,
)
from tests.integration.test_aggregates_chaos import (
    _check_consolidated,
    _check_dead_letters,
    _check_redis,
    _final_consolidated,
    _period_label,
)

pytestmark = pytest.mark.cluster

if os.environ.get("STREAM_APP_REDIS_CLUSTER", "").lower() != "true":
    pytest.skip(
        "the cluster profile is not up: `make chaos-cluster` starts it and runs this", allow_module_level=True
    )

CLUSTER = REPO_ROOT / "deploy" / "local" / "cluster"
SEED = int(os.environ.get("CHAOS_SEED", "20251203"))
HOURLY_FROM = date(2024, 2, 1)  # ~200,000 observations sent
FAULTS_AT = (
    0.06,
    0.17,
    0.28,
    0.39,
    0.5,
    0.61,
    0.72,
)  # share of distinct observations applied when each begins
SESSION_TIMEOUT_S = 6.0
SHORT_FEEDS = frozenset({"ENV.AQI", "HYD.WATER_LEVEL"})
REPORTS = REPO_ROOT / ".local" / "reports"


def cluster(*args: str, timeout: float = 240) -> None:
    subprocess.run([str(CLUSTER), *args], check=True, timeout=timeout, stdout=subprocess.DEVNULL)


# --- the services ------------------------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    tag = uuid.uuid4().hex[:10]
    return Settings().model_copy(
        update={
            "topic_namespace": f"c{tag}.",
            "redis_key_prefix": "sa",  # the profile's stream-app Redis user may touch sa:* only
            "broker_session_timeout_s": SESSION_TIMEOUT_S,
            "batch_within_s": 0.05,
            "batch_max": 300,
            "startup_timeout_s": 120,
        }
    )


def _admin_redis(settings: Settings) -> redis.RedisCluster:
    return redis.RedisCluster.from_url(settings.redis_url.get_secret_value(), socket_timeout=10)


def _clear_state(client: redis.RedisCluster, prefix: str) -> None:
    for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
        client.delete(key)


@pytest.fixture
def blueprint(settings: Settings) -> Iterator[Blueprint]:
    bp = load_blueprint(settings)
    assert settings.topic_profile == "cluster"
    assert all(t.replication_factor == 3 and t.config["min.insync.replicas"] == "2" for t in bp.topics)
    client = _admin_redis(settings)
    _clear_state(client, settings.redis_key_prefix)
    topics.apply(settings, bp.topics)
    acl.apply(bp, only={f"User:{settings.acl_app_user}"})
    yield bp
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    for future in admin.delete_topics([t.name for t in bp.topics], operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result()
    with contextlib.suppress(Exception):
        acl.revoke(bp)
    _clear_state(client, settings.redis_key_prefix)


@dataclass
class Workers:
    """Up to three workers of one consumer group, each with its own HTTP port and log."""

    settings: Settings
    folder: Path
    env: dict[str, str]
    running: list[WorkerProcess] = field(default_factory=list)
    every: list[WorkerProcess] = field(default_factory=list)

    def start(self, wait: bool = True) -> WorkerProcess:
        settings = self.settings.model_copy(update={"web_port": free_port()})
        log_path = self.folder / f"worker-{len(self.every)}.log"
        env = {**self.env, **settings_env(settings)}
        env.update({k: v for k, v in self.env.items() if k.startswith("STREAM_APP_REDIS") or "SASL" in k})
        worker = WorkerProcess(spawn(command("worker"), env, log_path), log_path, settings)
        self.running.append(worker)
        self.every.append(worker)
        if wait:
            worker.wait_ready(timeout=180)
        return worker

    def scale(self, count: int) -> None:
        while len(self.running) > count:
            self.running.pop().stop(timeout=60)
        fresh = [self.start(wait=False) for _ in range(count - len(self.running))]
        for worker in fresh:
            worker.wait_ready(timeout=180)

    def stop_all(self) -> None:
        for worker in self.every:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGCONT)
            worker.stop(timeout=60)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    app = principal_env("stream-app")
    tokens = tmp_path / "tokens.toml"
    create_token(tokens, "cluster-viewer", "viewer")
    env = {
        **os.environ,
        "STREAM_APP_KAFKA_SASL_USERNAME": app["STREAM_APP_KAFKA_SASL_USERNAME"],
        "STREAM_APP_KAFKA_SASL_PASSWORD": app["STREAM_APP_KAFKA_SASL_PASSWORD"],
        "STREAM_APP_REDIS_URL": app["STREAM_APP_REDIS_URL"],
        "STREAM_APP_REDIS_CLUSTER": "true",
        "STREAM_APP_REDIS_WAIT_REPLICAS": "1",
        "STREAM_APP_TOPIC_PROFILE": "cluster",
        "STREAM_APP_LOG_FORMAT": "json",
        "STREAM_APP_API_TOKENS_FILE": str(tokens),
    }
    pool = Workers(settings, tmp_path, env)
    yield pool
    pool.stop_all()


# --- the stream --------------------------------------------------------------------------------


class Feeder:
    """Sends the stream at up to ``rate`` records a second from a background thread (acks=all)."""

    def __init__(self, settings: Settings, records: list[tuple[str, bytes, bytes]], rate: int) -> None:
        self.records = records
        self.rate = rate
        self.sent = 0
        self.failures: list[str] = []
        self._producer = Producer({**confluent_config(settings), "acks": "all", "linger.ms": 5})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        for i, (topic, key, value) in enumerate(self.records):
            while True:
                try:
                    self._producer.produce(topic, key=key, value=value, on_delivery=self._delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            if i % 500 == 0:
                self._producer.poll(0)
                ahead = i / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        while self._producer.flush(5) > 0:
            pass

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err:
            self.failures.append(str(err))
        else:
            self.sent += 1

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the feeder did not finish"
        assert not self.failures, self.failures[:5]


# --- the faults --------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    command: str
    applied_at_start: int = 0
    started: float = 0.0  # epoch seconds
    action_s: float = 0.0  # how long the fault itself lasted (restart, failover, pause)
    recovered: float = 0.0  # epoch seconds: the state advanced again by RECOVERED_BY
    detail: dict[str, Any] = field(default_factory=dict)


RECOVERED_BY = 300  # distinct observations applied after the fault's action ended


def _fencing(exposition: str) -> tuple[float, float]:
    """A worker's (batches fenced before publishing, entity commits fenced), from its /metrics."""
    batches = sum(
        metric_value(exposition, "stream_app_batches_fenced_total", stage=stage)
        for stage in ("consolidate", "rollup")
    )
    return batches, metric_value(exposition, "stream_app_state_commits_fenced_total")


def _partition_leaders(settings: Settings, names: list[str]) -> dict[int, int]:
    """Broker id -> how many of ``names``' partitions it leads."""
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    metadata = admin.list_topics(timeout=15)
    led: Counter[int] = Counter()
    for name in names:
        for partition in metadata.topics[name].partitions.values():
            led[partition.leader] += 1
    return dict(led)


def _fully_replicated(settings: Settings, names: list[str]) -> bool:
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    try:
        metadata = admin.list_topics(timeout=10)
    except Exception:
        return False
    for name in names:
        for partition in metadata.topics[name].partitions.values():
            if partition.error is not None or len(partition.isrs) < 3:
                return False
    return True


REDIS_BASE = int(os.environ.get("SERVICES_CLUSTER_REDIS_BASE", "17000"))  # deploy/local/cluster's


def _redis_node_of(client: redis.RedisCluster, key: str) -> int:
    """The local node number (1-6) of the primary holding ``key``."""
    node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return int(node.port) - REDIS_BASE


def _node(number: int) -> redis.Redis:
    """A plain client of local Redis node ``number``, as the admin."""
    parts = urlsplit(os.environ["STREAM_APP_REDIS_URL"])
    netloc = f"{parts.username}:{parts.password}@{parts.hostname}:{REDIS_BASE + number}"
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return redis.Redis.from_url(url, socket_timeout=3)


def _replica_of(number: int) -> int:
    """The local node number of the replica of primary ``number`` (redis-cli --cluster create pairs
    them as it likes), from the primary's ROLE."""
    node = _node(number)
    try:
        role = node.execute_command("ROLE")  # type: ignore[no-untyped-call]
    finally:
        node.close()
    replicas = role[2]
    assert role[0] == b"master", role
    assert len(replicas) == 1, role
    return int(replicas[0][1]) - REDIS_BASE


def _redis_role(number: int) -> str:
    node = _node(number)
    try:
        info = node.info("replication")
    except redis.RedisError:
        return "down"
    finally:
        node.close()
    if info["role"] == "slave":
        return "replica-up" if info.get("master_link_status") == "up" else "replica-syncing"
    return "primary"


def _node_log(number: int) -> Path:
    state = Path(os.environ.get("SERVICES_CLUSTER_STATE_DIR", str(REPO_ROOT / ".local" / "cluster")))
    return state / f"redis-{number}" / "redis.log"


def _loading_trouble(log: Path, since: int) -> list[str]:
    """Lines of a node's log since ``since`` saying it could not replay all of its data."""
    with log.open("rb") as lines:
        lines.seek(since)
        text = lines.read().decode("utf-8", "replace").splitlines()
    return [line for line in text if LOADING_TROUBLE.search(line)][:10]


def _cluster_ok() -> bool:
    for number in range(1, 7):
        node = _node(number)
        try:
            if node.cluster("info")["cluster_state"] != "ok":
                return False
        except redis.RedisError:
            return False
        finally:
            node.close()
    return True


# --- the test ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One stream through the cluster, with the faults injected while it flows."""

    settings: Settings
    blueprint: Blueprint
    workers: Workers
    stream: gt.Stream
    rate: int  # observations sent per second, at most
    client: redis.RedisCluster = field(init=False)
    entities: list[str] = field(init=False)
    distinct: int = field(init=False)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = _admin_redis(self.settings)
        self.exp = gt.expected(self.stream)
        self.entities = sorted(set(self.exp.entities.values()))
        self.distinct = len(self.exp.final)
        schema = self.blueprint.schemas.latest("observation")
        self.records = [
            (self.blueprint.input_topic(s.topic_reporter).name, s.key, codecs.encode(schema, s.record))
            for s in self.stream.sent
        ]
        self.inputs = sorted({topic for topic, _, _ in self.records})
        self.internal = [self.blueprint.topic_by_role(r).name for r in ("repartition", "rollup")]
        self.feeder = Feeder(self.settings, self.records, self.rate)

    def applied(self) -> int:
        """Distinct observations the state holds (every entity's seen hash)."""
        with self.client.pipeline(transaction=False) as pipe:  # type: ignore[no-untyped-call]
            for entity in self.entities:
                pipe.hlen(f"{self.settings.redis_key_prefix}:{{{entity}}}:seen")
            return int(sum(pipe.execute()))

    def begin(self, name: str, command: str, share: float) -> Fault:
        wait_until(
            lambda: self.applied() >= share * self.distinct, 900, f"{share:.0%} applied before '{name}'"
        )
        fault = Fault(name, command, self.applied(), time.time())
        self.faults.append(fault)
        print(f"fault: {name} at {fault.applied_at_start}/{self.distinct} applied", flush=True)
        return fault

    def recovered(self, fault: Fault) -> None:
        fault.action_s = round(time.time() - fault.started, 1)
        target = min(self.distinct, self.applied() + RECOVERED_BY)
        wait_until(lambda: self.applied() >= target, 600, f"progress after '{fault.name}'")
        fault.recovered = time.time()

    def in_sync(self) -> bool:
        # the group's committed offsets too: the next broker must not go while they lack a replica
        return _fully_replicated(
            self.settings, [t.name for t in self.blueprint.topics] + ["__consumer_offsets"]
        )

    # --- the faults

    def rolling_broker_restart(self, share: float) -> None:
        """Every broker stopped (SIGTERM: a controlled shutdown) and started again, one at a time."""
        fault = self.begin(
            "rolling broker restart", "deploy/local/cluster broker stop|start N, N=1..3", share
        )
        for number in (1, 2, 3):
            cluster("broker", "stop", str(number))
            cluster("broker", "start", str(number))
            wait_until(self.in_sync, 300, f"every replica back in sync after broker {number}")
        self.recovered(fault)

    def kill_busiest_broker(self, share: float) -> None:
        """SIGKILL of the broker leading the most partitions of this run's inputs and internal topics."""
        fault = self.begin(
            "SIGKILL of the busiest leader broker", "deploy/local/cluster broker kill N", share
        )
        leaders = _partition_leaders(self.settings, self.inputs + self.internal)
        victim = max(leaders, key=lambda broker: leaders[broker])
        fault.detail = {"broker": victim, "partitions_led": leaders[victim]}
        cluster("broker", "kill", str(victim))
        time.sleep(10)  # the workers carry on with the other two (min.insync.replicas 2)
        cluster("broker", "start", str(victim))
        wait_until(self.in_sync, 300, "every replica back in sync")
        self.recovered(fault)

    def kill_redis_primary(self, share: float) -> None:
        """The Redis primary holding the applied marks SIGKILLed; its replica takes over; it comes back
        as the new primary's replica."""
        fault = self.begin(
            "Redis primary killed, replica promoted", "deploy/local/cluster redis kill N", share
        )
        primary = _redis_node_of(self.client, f"{self.settings.redis_key_prefix}:{{meta}}:epoch")
        replica = _replica_of(primary)
        fault.detail = {"killed_node": primary, "promoted_node": replica}
        cluster("redis", "kill", str(primary))
        promoted = wait_until(lambda: _redis_role(replica) == "primary", 60, f"redis node {replica} promoted")
        fault.detail["promotion_s"] = round(promoted, 1)
        cluster("redis", "start", str(primary))
        wait_until(
            lambda: _redis_role(primary) == "replica-up", 120, f"redis node {primary} back as a replica"
        )
        self.recovered(fault)

    def power_cut_redis(self, share: float) -> None:
        """Every Redis node SIGKILLed at once (a power cut, a maintenance restart gone wrong) and started
        again: each replays its append-only file under the shipped ACL file; nothing may be lost, and
        no node's log may show an error while loading."""
        fault = self.begin(
            "Redis power cut: all six nodes SIGKILLed", "deploy/local/cluster redis kill N, N=1..6", share
        )
        logs = {n: _node_log(n) for n in range(1, 7)}
        sizes = {n: log.stat().st_size for n, log in logs.items()}
        for number in range(1, 7):
            cluster("redis", "kill", str(number))
        time.sleep(3)
        for number in range(1, 7):
            cluster("redis", "start", str(number))
        wait_until(_cluster_ok, 120, "the Redis cluster's state ok with every slot served")
        fault.detail = {"loading_trouble": {n: _loading_trouble(logs[n], sizes[n]) for n in logs}}
        assert not any(fault.detail["loading_trouble"].values()), fault.detail
        self.recovered(fault)

    def rolling_redis_restart(self, share: float) -> None:
        """Every Redis node SIGKILLed and started again, one at a time, each once the cluster is whole."""
        fault = self.begin("rolling Redis restart", "deploy/local/cluster redis kill|start N, N=1..6", share)
        trouble: dict[int, list[str]] = {}
        for number in range(1, 7):
            log = _node_log(number)
            size = log.stat().st_size
            cluster("redis", "kill", str(number))
            time.sleep(2)
            cluster("redis", "start", str(number))
            wait_until(_cluster_ok, 120, f"the Redis cluster whole again after node {number}")
            wait_until(
                lambda n=number: _redis_role(n) in {"primary", "replica-up"},
                120,
                f"redis node {number} synced",
            )
            trouble[number] = _loading_trouble(log, size)
        fault.detail = {"loading_trouble": trouble}
        assert not any(trouble.values()), trouble
        self.recovered(fault)

    def pause_a_worker(self, share: float) -> None:
        """A worker SIGSTOPped past its session timeout: the group moves on without it; resumed, it is a
        zombie whose stale state writes the offset-in-commit rule refuses."""
        fault = self.begin(
            "worker SIGSTOP past the session timeout", "kill -STOP; sleep 16; kill -CONT", share
        )
        zombie = self.workers.running[0]
        before = _fencing(zombie.metrics())
        zombie.proc.send_signal(signal.SIGSTOP)
        time.sleep(SESSION_TIMEOUT_S + 10)
        zombie.proc.send_signal(signal.SIGCONT)
        self.recovered(fault)
        time.sleep(5)
        assert zombie.proc.poll() is None, f"the resumed worker exited:\n{zombie.log()[-3000:]}"
        after = _fencing(zombie.metrics())
        # reported, not asserted: a worker paused between two batches has nothing in flight to fence
        fault.detail = {
            "zombie_batches_fenced": after[0] - before[0],
            "zombie_commits_fenced": after[1] - before[1],
        }

    def rebalance_storm(self, share: float) -> None:
        """1 -> 3 -> 2 -> 1 workers, each step once the state moved on."""
        fault = self.begin("rebalance storm 1 -> 3 -> 2 -> 1", "stop/start workers", share)
        for count in (1, 3, 2, 1):
            self.workers.scale(count)
            target = min(self.distinct, self.applied() + 200)

            def reached(t: int = target) -> bool:
                return self.applied() >= t

            wait_until(reached, 600, f"progress with {count} worker(s)")
        self.recovered(fault)

    # --- the end

    def finish_and_check(self, workers: int, report_name: str) -> dict[str, Any]:
        self.workers.scale(workers)
        self.feeder.join(1200)
        wait_until(lambda: self.applied() == self.distinct, 1800, "every observation applied")
        lag = self.inputs + self.internal
        wait_until(
            lambda: group_lag(self.settings, self.blueprint, lag) == 0, 300, "the group's lag to reach 0"
        )
        # a cluster client reads as a single Redis's does
        _check_redis(self.client, self.settings, self.stream, self.exp)  # type: ignore[arg-type]
        _check_consolidated(_final_consolidated(self.settings, self.blueprint), self.stream, self.exp)
        _check_dead_letters(self.settings, self.blueprint, self.stream, self.exp)
        alerts = _read_alerts(self.settings, self.blueprint)
        _check_alerts(alerts)
        report = _report(self.faults, alerts, len(self.stream.sent), self.distinct, self.workers)
        REPORTS.mkdir(parents=True, exist_ok=True)
        (REPORTS / report_name).write_text(json.dumps(report, indent=2), encoding="utf-8")
        assert all(f.recovered for f in self.faults), report
        return report


@pytest.mark.timeout(3000)
def test_the_cluster_survives_every_fault(settings: Settings, blueprint: Blueprint, workers: Workers) -> None:
    """make chaos-cluster: ~200,000 observations, three workers, the seven faults one after the other."""
    stream = gt.generate(SEED, _period_label(settings), HOURLY_FROM)
    run = Run(settings, blueprint, workers, stream, rate=700)  # ~5 min of stream: every fault hits it
    assert len(run.stream.sent) >= 200_000, len(run.stream.sent)
    workers.scale(3)
    run.feeder.start()
    run.rolling_broker_restart(FAULTS_AT[0])
    run.kill_busiest_broker(FAULTS_AT[1])
    run.kill_redis_primary(FAULTS_AT[2])
    run.power_cut_redis(FAULTS_AT[3])
    run.rolling_redis_restart(FAULTS_AT[4])
    run.pause_a_worker(FAULTS_AT[5])
    run.rebalance_storm(FAULTS_AT[6])
    run.finish_and_check(workers=3, report_name="cluster_chaos.json")


@pytest.mark.timeout(900)
def test_short_the_cluster_survives_a_broker_and_a_redis_primary_lost(
    settings: Settings, blueprint: Blueprint, workers: Workers
) -> None:
    """make test's short version: the hourly stations for a month (~8,000 observations), two workers,
    the busiest broker SIGKILLed, a Redis primary lost, then every Redis node SIGKILLed at once."""
    stream = gt.generate(SEED, _period_label(settings), date(2025, 9, 1), only=SHORT_FEEDS)
    run = Run(settings, blueprint, workers, stream, rate=100)  # ~80 s of stream: faults hit it mid-way
    workers.scale(2)
    run.feeder.start()
    run.kill_busiest_broker(0.15)
    run.kill_redis_primary(0.45)
    run.power_cut_redis(0.75)
    run.finish_and_check(workers=2, report_name="cluster_chaos_short.json")


@pytest.mark.timeout(1500)
def test_redis_nodes_restarted_one_by_one_lose_nothing(
    settings: Settings, blueprint: Blueprint, workers: Workers
) -> None:
    """make chaos's cluster part: every Redis node SIGKILLed and started again, one at a time, while
    ~8,000 observations flow through two workers; each node replays its append-only file under the
    shipped ACL file with no error, and every aggregate equals the ground truth."""
    stream = gt.generate(SEED, _period_label(settings), date(2025, 9, 1), only=SHORT_FEEDS)
    run = Run(settings, blueprint, workers, stream, rate=60)  # ~130 s of stream: the restarts take ~1 min
    workers.scale(2)
    run.feeder.start()
    run.rolling_redis_restart(0.1)
    run.finish_and_check(workers=2, report_name="cluster_rolling_redis.json")


Alert = tuple[float, int, dict[str, Any]]  # (timestamp in s, offset in its partition, record)


def _read_alerts(settings: Settings, blueprint: Blueprint) -> list[Alert]:
    """Every record of the alerts topic, to its end now."""
    return [
        (
            message.timestamp()[1] / 1000,
            message.offset() or 0,
            decode_public(blueprint, "alert", message.value() or b""),
        )
        for message in to_the_end(settings, blueprint.topic_by_role("alerts").name, timeout=120)
    ]


def _check_alerts(alerts: list[Alert]) -> None:
    """Once by id: every copy of an alert id is the same transition; per alert, the transitions chain
    in the order they were published (an alert's changes share its key, so one partition; a copy sent
    again after a fault counts where it was first sent): FIRING opens a closed alert, every other
    change begins at the level the one before ended at, RESOLVED closes."""
    assert alerts, "no alert was published"
    first: dict[str, dict[str, Any]] = {}
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, _, record in sorted(alerts, key=lambda a: a[1]):
        same = {k: v for k, v in record.items() if k != "processing_time"}
        seen = first.setdefault(record["alert_id"], same)
        assert seen == same, f"two different transitions share the id {record['alert_id']}: {seen} / {same}"
        if seen is same and record.get("event_type", "TRANSITION") == "TRANSITION":
            chains[record["alert_key"]].append(record)
    broken = []
    for key, chain in chains.items():
        level: int | None = None  # the open alert's level; None: closed
        for record in chain:
            if record["transition"] == "FIRING":
                ok = level is None
            else:
                ok = level is not None and record["previous_level"] == level
            if not ok:
                broken.append((key, record["transition"], record["previous_level"], level))
                break
            level = None if record["transition"] == "RESOLVED" else record["level"]
    assert not broken, f"{len(broken)} alerts whose transitions do not chain: {broken[:5]}"


def _report(
    faults: list[Fault],
    alerts: list[Alert],
    sent: int,
    distinct: int,
    workers: Workers,
) -> dict[str, Any]:
    times = sorted(t for t, _, _ in alerts)

    def longest_gap(start: float, end: float) -> float:
        inside = [t for t in times if start <= t <= end]
        before = [t for t in times if t < start][-1:]
        after = [t for t in times if t > end][:1]
        points = before + inside + after
        return max((b - a for a, b in itertools.pairwise(points)), default=end - start)

    rows = [
        {
            "fault": f.name,
            "command": f.command,
            "applied_when_it_began": f.applied_at_start,
            "fault_lasted_s": f.action_s,
            "recovered_after_s": round(f.recovered - f.started, 1),
            "longest_alert_gap_s": round(longest_gap(f.started, f.recovered), 2),
            **f.detail,
        }
        for f in faults
    ]
    quiet = [longest_gap(a, b) for a, b in zip(times[:1], times[-1:], strict=False)]
    report = {
        "observations_sent": sent,
        "distinct_observations": distinct,
        "alert_records": len(alerts),
        "distinct_alerts": len({r["alert_id"] for _, _, r in alerts}),
        "longest_alert_gap_whole_run_s": round(max(quiet, default=0.0), 2),
        "workers_started": len(workers.every),
        "faults": rows,
    }
    print(json.dumps(report, indent=2))
    return report
