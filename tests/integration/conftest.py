"""Fixtures for tests against the real local Kafka and Redis (``deploy/local/services up``).

Every test gets its own topic namespace, consumer group, Redis key prefix and HTTP port, so tests
never see each other's data.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from stream_app import topics
from stream_app.runtime import Blueprint, load_blueprint
from stream_app.settings import Settings

from .support import WorkerProcess, free_port, settings_env


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings of the local services; fails loudly when they are not running."""
    settings = Settings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    try:
        admin.list_topics(timeout=10)
        redis.Redis.from_url(settings.redis_url.get_secret_value(), socket_timeout=3).ping()
    except Exception as exc:  # any failure means the same thing here
        pytest.fail(f"local services are not running ({exc}); run `deploy/local/services up` or `make test`")
    return settings


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Per-test settings: a fresh namespace for topics, group, Redis keys, and a free HTTP port."""
    tag = uuid.uuid4().hex[:10]
    return base_settings.model_copy(
        update={
            "topic_namespace": f"t{tag}.",
            "redis_key_prefix": f"t{tag}",
            "web_port": free_port(),
            "broker_session_timeout_s": 6.0,
            "batch_within_s": 0.02,
        }
    )


@pytest.fixture
def blueprint(settings: Settings) -> Iterator[Blueprint]:
    """The test's topics, created on the broker and deleted afterwards."""
    bp = load_blueprint(settings)
    topics.apply(settings, bp.topics)
    yield bp
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3})
    for future in admin.delete_topics([t.name for t in bp.topics], operation_timeout=10).values():
        with contextlib.suppress(Exception):  # best-effort cleanup of a throwaway namespace
            future.result()
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        client.delete(key)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker for given settings (and extra env); all are stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, wait: bool = True, **extra_env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        env = {**os.environ, **settings_env(settings), "STREAM_APP_LOG_FORMAT": "json", **extra_env}
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stream_app", "worker"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log_path, settings)
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
