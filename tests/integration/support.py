"""Helpers for integration tests: real producers and consumers, worker processes, metrics parsing."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream_app.config.blueprint import load_blueprint
from stream_app.kafka.config import confluent_config, security_env
from stream_app.settings import Settings
from stream_app.wire import codecs

READY_LINE = "[^Worker]: Ready"
# The API tokens the test workers accept, by role (made by the session's api_tokens_file fixture).
API_TOKENS: dict[str, str] = {}


def api(
    settings: Settings, path: str, *, role: str | None = "viewer", body: Any = None, **params: str
) -> tuple[int, Any]:
    """Call the worker's API at ``/api/v1<path>`` as ``role`` (None: no token); GET, or POST ``body``."""
    query = urllib.parse.urlencode(params)
    url = f"http://{settings.web_host}:{settings.web_port}/api/v1{path}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Bearer {API_TOKENS[role]}"} if role else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http to the local worker
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The STREAM_APP_* variables that recreate ``settings`` in a worker process."""
    env = {}
    for name in (
        "app_id",
        "kafka_bootstrap",
        "topic_namespace",
        "redis_key_prefix",
        "web_host",
        "web_port",
        "batch_max",
        "batch_within_s",
        "broker_session_timeout_s",
        "broker_heartbeat_interval_s",
        "startup_timeout_s",
    ):
        env[f"STREAM_APP_{name.upper()}"] = str(getattr(settings, name))
    env["STREAM_APP_REDIS_URL"] = settings.redis_url.get_secret_value()
    env.update(security_env(settings))
    return env


@dataclass
class WorkerProcess:
    """A real ``stream-app worker`` process."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    settings: Settings

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY_LINE in self.log():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        pytest.fail(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def metrics(self) -> str:
        url = f"http://{self.settings.web_host}:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def produce(settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records and wait for every delivery."""
    failures: list[str] = []
    producer = Producer({**confluent_config(settings), "acks": "all", "linger.ms": 2})
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=value,
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )
    assert producer.flush(30) == 0
    assert not failures, failures


@dataclass
class Collected:
    """Records read from one output topic, decoded."""

    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)


def messages(settings: Settings, topic: str, stop: Callable[[], bool], timeout: float) -> Iterator[Any]:
    """Messages of ``topic`` from the beginning (a fresh group), until ``stop()`` or the timeout."""
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not stop():
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, str(error)
                continue
            yield message
    finally:
        consumer.close()


def collect(
    settings: Settings,
    topic: str,
    subject: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 45.0,
    *,
    resolve: codecs.ConfluentResolver | None = None,
) -> Collected:
    """Read ``topic`` from the beginning, decoding ``subject`` records, until ``until(records)`` holds.

    Records are Avro single-object encoded or, given ``resolve`` (a registry's resolver), Confluent-framed.
    """
    out = Collected()
    schemas = load_blueprint(settings).schemas
    for message in messages(settings, topic, lambda: until(out.records), timeout):
        out.records.append(codecs.decode(schemas, subject, message.value() or b"", resolve))
        out.keys.append(message.key())
    return out


def wait_until(predicate: Callable[..., Any], timeout: float, what: str) -> float:
    """Poll ``predicate`` until it holds (returns the seconds it took) or fail the test after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def to_the_end(settings: Settings, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every message of ``topic`` up to its end as it is now, partition by partition in offset order."""
    consumer = Consumer(
        {
            **confluent_config(settings),
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    out: list[Any] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            out.append(message)
            if (message.offset() or 0) + 1 >= ends.get(message.partition() or 0, 0):
                ends.pop(message.partition() or 0, None)
        assert not ends, f"could not read {topic} to its end: {ends}"
    finally:
        consumer.close()
    return out


def raw_records(
    settings: Settings, topic: str, timeout: float = 5.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of ``topic`` within ``timeout``, tombstones included (value None)."""
    return [(m.key(), m.value()) for m in messages(settings, topic, lambda: False, timeout)]


def observation(**overrides: Any) -> dict[str, Any]:
    """A valid ENV.AQI observation at Hoàn Kiếm, now; override any field."""
    now_ms = int(time.time() * 1000)
    record: dict[str, Any] = {
        "observation_id": f"obs-{uuid.uuid4().hex[:12]}",
        "revision": 0,
        "reporter": "MAE",
        "indicator": "ENV.AQI",
        "region": "01",
        "station": "HN-AQ-HOANKIEM",
        "value": 42.0,
        "unit": "index",
        "event_time": now_ms,
        "report_time": now_ms,
        "quality": "FINAL",
        "period": None,
        "breakdowns": {},
    }
    record.update(overrides)
    return record


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric, _, label_text = sample.partition("{")
        have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and have == wanted:
            return float(value)
    return 0.0


def group_lag(settings: Settings, blueprint: Any, topics: list[str]) -> int:
    """Records of ``topics`` the worker's consumer group has not committed yet (over every partition)."""
    consumer = Consumer({**confluent_config(settings), "group.id": settings.group_id})
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in range(next(s.partitions for s in blueprint.topics if s.name == t))
        ]
        lag = 0
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def redis_text(raw: object) -> str:
    """One reply of the tests' Redis clients, which decode nothing (redis-py types replies ``bytes | str``:
    it cannot know that ``decode_responses`` is off), as text."""
    assert isinstance(raw, bytes), raw
    return raw.decode()


def redis_hash(client: redis.Redis, key: str | bytes) -> dict[bytes, bytes]:
    """A Redis hash as the tests' clients read it: raw bytes (redis-py types it ``bytes | str``)."""
    out: dict[bytes, bytes] = {}
    for name, value in client.hgetall(key).items():
        assert isinstance(name, bytes), name
        assert isinstance(value, bytes), value
        out[name] = value
    return out


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test can stop and start again.
    ``durable``: as the local services' Redis (append-only file fsynced every second, RDB
    snapshots), so a restart keeps what was acknowledged; without it every start is empty."""

    def __init__(self, folder: Path, *, durable: bool = True) -> None:
        self.port = free_port()
        self.folder = folder
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is installed by deploy/local/services install"
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                *(
                    ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "3600 1 300 100 60 10000"]
                    if self.durable
                    else ["--appendonly", "no", "--save", ""]
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_timeout=1).ping()
            except redis.RedisError:
                time.sleep(0.05)
            else:
                return
        pytest.fail("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
