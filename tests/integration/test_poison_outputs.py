"""Outputs Kafka refuses for good: the record that produced them is dead-lettered, the partition moves on.

Before this, a record Kafka refused (too large) was retried for ever as if Kafka were down, and the
consolidate agent stopped for the whole country while /health answered ready.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from stream_app.config.blueprint import Blueprint
from stream_app.exit_codes import ExitCode
from stream_app.kafka.config import confluent_config
from stream_app.settings import Settings
from stream_app.tools.launch import command
from stream_app.wire import codecs

from .support import decode_public, group_lag, messages, observation, produce, redis_text, settings_env

pytestmark = pytest.mark.chaos

STATION = "{ENV.AQI|01|HN-AQ-HOANKIEM}"


def _limit(settings: Settings, topic: str, max_bytes: int) -> None:
    admin = AdminClient({**confluent_config(settings), "log_level": 3})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", str(max_bytes), incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def test_an_output_kafka_refuses_dead_letters_its_cause_and_the_partition_moves_on(
    settings: Settings, blueprint: Blueprint, start_worker: Any
) -> None:
    worker = start_worker(settings)
    # The environment domain's alert topic starts refusing records as large as an alert (a change an
    # operator made after the worker started: its start-up check saw the old limit).
    _limit(settings, blueprint.domain_alerts_topic("environment").name, 200)
    topic = blueprint.input_topic("MAE").name
    schema = blueprint.schemas.latest("observation")
    base = int(time.time() * 1000) - 3 * 3_600_000

    def send(index: int, value: float) -> None:
        record = observation(observation_id=f"r-{index}", value=value, event_time=base + index * 60_000)
        produce(settings, topic, [(b"HN-AQ-HOANKIEM", codecs.encode(schema, record))])
        time.sleep(0.5)  # one record per batch: a refused produce request holds only its own record

    for index, value in enumerate([40.0, 170.0, 180.0, 190.0, 45.0, 50.0]):
        send(index, value)
    watched = [t.name for t in blueprint.topics if t.role in ("input", "repartition", "rollup")]
    deadline = time.monotonic() + 60
    while group_lag(settings, blueprint, watched) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert group_lag(settings, blueprint, watched) == 0, "the partition moved on"

    letters = [
        decode_public(blueprint, "dead_letter", m.value() or b"")
        for m in messages(
            settings, blueprint.topic_by_role("consolidate_dead_letter").name, lambda: False, 6.0
        )
    ]
    assert letters, "the record whose alert was refused is dead-lettered"
    assert {d["reason"] for d in letters} == {"output_refused"}
    assert all("MessageSizeTooLarge" in (d["error_type"] or "") for d in letters), letters[0]["error_type"]
    assert all(d["stage"] == "consolidate" and d["original"] for d in letters)
    # the readings that raised no alert were applied; those whose alert was refused were not
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    seen = {
        redis_text(k).partition("|")[2] for k in client.hkeys(f"{settings.redis_key_prefix}:{STATION}:seen")
    }
    assert {"r-0", "r-4", "r-5"} <= seen
    refused = {
        codecs.decode(blueprint.schemas, "observation", d["original"])["observation_id"] for d in letters
    }
    assert refused
    assert not refused & seen
    assert worker.proc.poll() is None
    assert "agent_crashed" not in worker.log()


def test_a_worker_will_not_start_when_a_topic_refuses_records_of_its_output_budget(
    settings: Settings, blueprint: Blueprint
) -> None:
    _limit(settings, blueprint.topic_by_role("consolidated").name, 100_000)
    env = {**os.environ, **settings_env(settings), "STREAM_APP_STARTUP_TIMEOUT_S": "5"}
    done = subprocess.run(command("worker"), env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == ExitCode.CONFIG
    stderr = done.stderr.decode()
    assert "STREAM_APP_OUTPUT_MAX_BYTES" in stderr
    assert blueprint.topic_by_role("consolidated").name in stderr
    assert "Traceback" not in stderr
