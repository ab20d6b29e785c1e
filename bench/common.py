"""What every benchmark scenario needs: a throwaway namespace on the real local services, worker
processes, their /metrics, Kafka high watermarks and memory figures.

Every run gets topic names under ``bench.<uuid>.`` and Redis keys under ``bench-<uuid>``, and deletes
both at the end, so it never disturbs tests or demos running against the same services.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka import topics
from stream_app.kafka.config import confluent_config, security_env
from stream_app.settings import Settings
from stream_app.tools.launch import Launched, command, spawn

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A scenario could not be measured (a process died, a deadline passed)."""


# --- services ------------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_loopback(settings: Settings) -> None:
    """Refuse to run against anything but local services: the harness deletes topics and keys."""
    for server in settings.kafka_bootstrap.split(","):
        if not _loopback(server.strip().rsplit(":", 1)[0]):
            raise SystemExit(f"Kafka bootstrap {server!r} is not loopback: the benchmark runs locally only")
    if not _loopback(urlsplit(settings.redis_url.get_secret_value()).hostname or ""):
        raise SystemExit("the Redis URL is not loopback: the benchmark runs locally only")


def free_port() -> int:
    """A TCP port free right now on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_client(settings: Settings) -> redis.Redis:
    """A synchronous client of the configured Redis."""
    return redis.Redis.from_url(settings.redis_url.get_secret_value())


def redis_used_memory(settings: Settings) -> int:
    """Redis ``used_memory`` (bytes), for the whole server."""
    return int(redis_client(settings).info("memory")["used_memory"])


def redis_traffic(settings: Settings) -> tuple[int, int]:
    """(commands processed, bytes sent to clients) by the whole Redis server so far (``INFO stats``)."""
    stats = redis_client(settings).info("stats")
    return int(stats["total_commands_processed"]), int(stats["total_net_output_bytes"])


def redis_prefix_memory(settings: Settings, prefix: str) -> tuple[int, int]:
    """(keys, bytes) under ``prefix`` by ``MEMORY USAGE`` of every key: this run's share of Redis."""
    client = redis_client(settings)
    keys = total = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 500:
            keys, total = keys + len(batch), total + _memory_usage(client, batch)
            batch = []
    if batch:
        keys, total = keys + len(batch), total + _memory_usage(client, batch)
    return keys, total


def _memory_usage(client: redis.Redis, keys: list[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(v or 0) for v in pipe.execute())


# --- namespaces ----------------------------------------------------------------------------------


def registry_env(settings: Settings) -> dict[str, str]:
    """How the harness's settings frame the public topics, for a process it starts: the registry (the
    default framing needs one) or, without one, single-object records."""
    if not settings.schema_registry_url:
        return {"STREAM_APP_OUTPUT_FRAMING": "single_object"}
    env = {
        "STREAM_APP_OUTPUT_FRAMING": settings.output_framing,
        "STREAM_APP_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
    }
    if settings.schema_registry_ca_file is not None:
        env["STREAM_APP_SCHEMA_REGISTRY_CA_FILE"] = str(settings.schema_registry_ca_file)
    if settings.schema_registry_auth is not None:
        env["STREAM_APP_SCHEMA_REGISTRY_AUTH"] = settings.schema_registry_auth.get_secret_value()
    return env


@dataclass
class Namespace:
    """One scenario's topics (``bench.<uuid>.``), consumer group and Redis key prefix."""

    tag: str
    settings: Settings
    blueprint: Blueprint
    extra_topics: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: Settings, label: str) -> Namespace:
        """A new namespace with every declared topic created."""
        tag = f"{label}-{uuid.uuid4().hex[:10]}"
        settings = base.model_copy(
            update={"topic_namespace": f"bench.{tag}.", "redis_key_prefix": f"bench-{tag}"}
        )
        blueprint = load_blueprint(settings)
        topics.apply(settings, blueprint.topics)
        return cls(tag, settings, blueprint)

    @property
    def prefix(self) -> str:
        return self.settings.redis_key_prefix

    def input_topics(self) -> dict[str, str]:
        """Input topic name -> reporter: the live and the bulk topics."""
        topics = [*self.blueprint.input_topics(), *self.blueprint.bulk_topics()]
        return {t.name: t.reporter for t in topics if t.reporter}

    def topic(self, role: str) -> str:
        return self.blueprint.topic_by_role(role).name

    def add_topics(self, names: Iterable[str], partitions: int = 4) -> None:
        """Extra topics (a peer's outputs), deleted with the namespace."""
        admin = admin_client(self.settings)
        wanted = [NewTopic(name, partitions, 1) for name in names]
        for future in admin.create_topics(wanted, request_timeout=30).values():
            future.result()
        self.extra_topics.extend(t.topic for t in wanted)
        _wait_for_topics(self.settings, [t.topic for t in wanted])

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a process working in this namespace."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
        return {
            **base,
            **security_env(self.settings),  # the harness's identity (the admin, from `make bench`)
            "STREAM_APP_REDIS_URL": self.settings.redis_url.get_secret_value(),
            "STREAM_APP_TOPIC_NAMESPACE": self.settings.topic_namespace,
            "STREAM_APP_REDIS_KEY_PREFIX": self.prefix,
            "STREAM_APP_LOG_FORMAT": "json",
            "STREAM_APP_LOG_LEVEL": "warning",
            "PYTHONPATH": str(REPO_ROOT),  # this checkout's code, whatever the venv's editable install says
            **registry_env(self.settings),
            **extra,
        }

    def delete(self) -> None:
        """Delete every topic of the namespace (also those a peer created, e.g. Quix changelogs)
        and every Redis key under its prefix. Best effort: the namespace is throwaway."""
        admin = admin_client(self.settings)
        with contextlib.suppress(Exception):
            names = [n for n in admin.list_topics(timeout=10).topics if self.tag in n]
            if names:
                for future in admin.delete_topics(names, operation_timeout=30).values():
                    with contextlib.suppress(Exception):
                        future.result()
        with contextlib.suppress(Exception):
            for group in (self.settings.group_id, *self._peer_groups()):
                for future in admin.delete_consumer_groups([group], request_timeout=10).values():
                    with contextlib.suppress(Exception):
                        future.result()
        client = redis_client(self.settings)
        with contextlib.suppress(Exception):
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}:*", count=2000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)

    def _peer_groups(self) -> list[str]:
        return [f"{self.settings.topic_namespace}peer-{name}" for name in ("floor", "naive-faust", "quix")]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({**confluent_config(settings), "log_level": 3})


def _wait_for_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        known = admin.list_topics(timeout=10).topics
        if all(name in known and known[name].partitions for name in names):
            return
        time.sleep(0.2)
    raise BenchError(f"topics {names} not usable after {timeout:.0f} s")


def high_watermarks(settings: Settings, names: Iterable[str]) -> dict[str, int]:
    """Topic -> records written so far (sum of the partitions' high watermarks; topics here are
    never truncated)."""
    # log_level 0: a consumer closed while it authenticates to the coordinator logs an error, harmlessly
    consumer = Consumer({**confluent_config(settings), "group.id": "bench-watermarks", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        out = {}
        for name in names:
            total = 0
            for partition in metadata[name].partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
                total += high
            out[name] = total
        return out
    finally:
        consumer.close()


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Process(Launched):
    """A process under test (a worker or a peer), with its log, CPU time and memory."""

    web_port: int | None = None

    @classmethod
    def start(cls, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path, cwd: Path) -> Process:
        log_path = log_dir / f"{name}.log"
        port = env.get("STREAM_APP_WEB_PORT")
        return cls(spawn(argv, env, log_path, cwd=cwd), log_path, int(port) if port else None, name=name)

    def failed(self, message: str) -> NoReturn:
        raise BenchError(f"{message}:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if not self.alive():
            self.failed(f"{self.name} exited with {self.proc.returncode}")

    def wait_for_line(self, text: str, timeout: float = 90.0) -> None:
        super().wait_for_line(text, timeout)

    def peak_rss_bytes(self) -> int | None:
        """The kernel's high-water mark of resident memory (VmHWM) for the process."""
        return self._status_bytes("VmHWM:")

    def rss_bytes(self) -> int | None:
        """Resident memory now (VmRSS)."""
        return self._status_bytes("VmRSS:")

    def _status_bytes(self, field_: str) -> int | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field_):
                    return int(line.split()[1]) * 1024
        return None

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics as ``name{label="v",...}`` -> value (an empty dict if unreachable)."""
        if self.web_port is None:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
        return out


def start_worker(ns: Namespace, index: int, log_dir: Path, extra_env: Mapping[str, str]) -> Process:
    """``stream-app worker`` as in production, in its own data directory."""
    data_dir = log_dir / f"worker-{index}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = ns.env(
        STREAM_APP_WEB_HOST="127.0.0.1",
        STREAM_APP_WEB_PORT=str(free_port()),
        STREAM_APP_DATA_DIR=str(data_dir),
        STREAM_APP_LOG_LEVEL="info",  # the Ready line is logged at info
        **extra_env,
    )
    return Process.start(f"worker-{index}", command("worker"), env, log_dir, cwd=data_dir)


def summed(samples: Iterable[Mapping[str, float]], name: str, topics_: Iterable[str] | None = None) -> float:
    """Sum of a metric over workers (and over the given ``topic`` labels, when given)."""
    wanted = None if topics_ is None else {f'topic="{t}"' for t in topics_}
    total = 0.0
    for sample in samples:
        for key, value in sample.items():
            base, _, labels = key.partition("{")
            if base != name:
                continue
            if wanted is not None and labels.rstrip("}") not in wanted:
                continue
            total += value
    return total
