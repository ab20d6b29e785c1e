"""One reporter cannot starve the others: MPS floods its topic at full speed while MAE reports flood
alarms on the Red River; MAE's alerts come out about as fast as without the flood.

Latency here is the alarm record's timestamp (set by the test's producer) to its alert's timestamp on
``center.alerts`` (set by the worker's producer): no reader's polling in between. Both defences are at
work, as in production: the flood comes from a SCRAM user of the test's own standing in for MPS (write
access to the test's MPS topic only), held to the quotas ``stream-app quotas`` derives for MPS, and
what the broker lets through is shared fairly with MAE in the worker (:class:`stream_app.kafka.lanes.Lane`).
The user, its ACLs and its quotas are removed at the end; the shared ``mps`` user is never touched.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from stream_app.config.blueprint import Blueprint
from stream_app.kafka import quotas
from stream_app.kafka.config import confluent_config
from stream_app.logs import get_logger
from stream_app.settings import Settings
from stream_app.wire import codecs

from .conftest import secured
from .hostile import DAY_MS, HOUR_MS
from .support import collect, decode_public, group_lag, metric_value, observation, produce, wait_until

log = get_logger(__name__)

ALLOW = AclPermissionType.ALLOW
FLOOD_RECORDS = 200_000
QUIET_STATIONS = ("HN-LONGBIEN", "HN-SONTAY")
FLOODED_STATIONS = ("PT-TRUNGHA", "HN-THUONGCAT")


@dataclass
class Flood:
    """MPS's flood, produced from a thread as fast as librdkafka takes it."""

    settings: Settings
    topic: str
    records: list[tuple[bytes, bytes]]
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="flood", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        producer = Producer(
            {**confluent_config(self.settings), "linger.ms": 20, "compression.type": "lz4", "log_level": 3}
        )

        def report(err: Any, _msg: Any) -> None:
            if err:
                self.failures.append(str(err))

        for index in range(FLOOD_RECORDS):
            if self.stopping.is_set():
                break
            key, value = self.records[index % len(self.records)]
            while True:
                try:
                    producer.produce(self.topic, key=key, value=value, on_delivery=report)
                    break
                except BufferError:  # librdkafka's queue is full: at full speed, that is the pace
                    producer.poll(0.01)
            self.sent = index + 1
        producer.purge()  # what the broker did not take yet: the flood is over
        producer.flush(10)

    def stop(self) -> None:
        self.stopping.set()
        assert self.thread is not None
        self.thread.join(30)


class Alerts:
    """Every alert of ``center.alerts`` the worker publishes, read from a thread: (station,
    transition) -> the alert's timestamp in ms."""

    def __init__(self, settings: Settings, blueprint: Blueprint) -> None:
        self.settings = settings
        self.blueprint = blueprint
        self.topic = blueprint.topic_by_role("alerts").name
        self.seen: dict[tuple[str, str], int] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        consumer = Consumer(
            {
                **confluent_config(self.settings),
                "group.id": f"{self.settings.topic_namespace}test-alerts",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        consumer.subscribe([self.topic])
        try:
            while not self.stopped.is_set():
                message = consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                alert = decode_public(self.blueprint, "alert", message.value() or b"")
                self.seen[(alert["station"] or "", alert["transition"])] = int(message.timestamp()[1])
        finally:
            consumer.close()

    def fired_at(self, station: str, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (station, "FIRING") in self.seen:
                return self.seen[(station, "FIRING")]
            time.sleep(0.02)
        raise AssertionError(f"no alert for {station} within {timeout:g} s")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)


def _flood_records(blueprint: Blueprint) -> list[tuple[bytes, bytes]]:
    """Valid daily traffic deaths of every province (5,100 of them), cycled: the rest are duplicates."""
    schema = blueprint.schemas.latest("observation")
    provinces = sorted(c for c, r in blueprint.catalogue.regions.items() if r.kind == "current")
    now_ms = int(time.time() * 1000)
    hour = now_ms - now_ms % HOUR_MS
    rng = random.Random(25)
    out = []
    for region in provinces:
        for day in range(1, 151):
            at = hour - day * DAY_MS
            record = observation(
                observation_id=f"mps-{region}-{day}",
                reporter="MPS",
                indicator="TRF.DEATHS",
                region=region,
                station=None,
                unit="persons",
                value=float(rng.randint(0, 20)),
                event_time=at,
                report_time=at + 60_000,
            )
            out.append((f"{region}:-".encode(), codecs.encode(schema, record)))
    rng.shuffle(out)
    return out


def _alarm(settings: Settings, blueprint: Blueprint, station: str) -> int:
    """MAE reports the station's water above its first alarm level; returns the record's timestamp."""
    place = blueprint.catalogue.stations[station]
    first = next(level for level in place.levels if level.code == "BD1")
    record = observation(
        indicator="HYD.WATER_LEVEL",
        region=place.region,
        station=station,
        unit="m",
        value=first.lower + 0.2,
        event_time=int(time.time() * 1000) - 60_000,
    )
    stamped: list[int] = []
    producer = Producer({**confluent_config(settings), "acks": "all", "linger.ms": 0, "log_level": 3})
    producer.produce(
        blueprint.input_topic("MAE").name,
        key=station.encode(),
        value=codecs.encode(blueprint.schemas.latest("observation"), record),
        on_delivery=lambda err, msg: stamped.append(-1 if err else int(msg.timestamp()[1])),
    )
    assert producer.flush(10) == 0
    assert stamped, "the alarm was not delivered"
    assert stamped[0] > 0, "the alarm was refused"
    return stamped[0]


def _latency(alerts: Alerts, settings: Settings, blueprint: Blueprint, station: str) -> float:
    sent = _alarm(settings, blueprint, station)
    return (alerts.fired_at(station) - sent) / 1000


@pytest.fixture
def flooder(settings: Settings, blueprint: Blueprint) -> Iterator[Settings]:
    """``settings`` as a SCRAM user of the test's own that may write the test's MPS topic, held to the
    quotas the catalogue gives MPS; removed (user, grants, quotas) afterwards."""
    if not secured(settings):
        pytest.skip("needs the secured local services (SCRAM users, quotas per user)")
    user = f"flood-{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(16)
    topic = blueprint.input_topic("MPS").name
    grants = [
        (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{user}", "*", operation, ALLOW)
        for operation in (AclOperation.WRITE, AclOperation.DESCRIBE)
    ]
    mps = quotas.reporter_user("MPS")
    limits = {(user, q.key): q.value for q in quotas.quotas(blueprint) if q.user == mps}
    admin = AdminClient(confluent_config(settings, **{"log_level": 3}))
    try:  # everything below is undone, whatever step fails
        credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        upsert = UserScramCredentialUpsertion(user, credential, password.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result()
        for future in admin.create_acls([AclBinding(*grant) for grant in grants]).values():
            future.result()
        quotas.alter(settings, limits)
        # set through the admin API, enforced once the broker's metadata has them
        wait_until(lambda: quotas.current(settings, [user]) == limits, 15, "the flooder's quotas")
        as_flooder = settings.model_copy(
            update={"kafka_sasl_username": user, "kafka_sasl_password": SecretStr(password)}
        )
        _until_it_may_write(as_flooder, topic)
        yield as_flooder
    finally:
        _remove_flooder(admin, settings, user, grants, limits)


def _remove_flooder(
    admin: AdminClient,
    settings: Settings,
    user: str,
    grants: list[tuple[Any, ...]],
    limits: dict[tuple[str, str], float],
) -> None:
    """Best effort, step by step: a throwaway user's quotas, grants and credentials."""
    with contextlib.suppress(Exception):
        quotas.alter(settings, dict.fromkeys(limits))
    for future in admin.delete_acls([AclBindingFilter(*grant) for grant in grants]).values():
        with contextlib.suppress(Exception):
            future.result()
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
    for future in admin.alter_user_scram_credentials([deletion]).values():
        with contextlib.suppress(Exception):
            future.result()


def _until_it_may_write(settings: Settings, topic: str) -> None:
    """The broker takes a moment to load a new SCRAM user and its grants: retry one record until it
    lands (a record of no consequence: an empty value the intake dead-letters)."""
    deadline = time.monotonic() + 30
    while True:
        failures: list[str] = []

        def report(err: Any, _msg: Any, failures: list[str] = failures) -> None:
            if err:
                failures.append(str(err))

        producer = Producer({**confluent_config(settings), "log_level": 0, "message.timeout.ms": 5000})
        producer.produce(topic, key=b"probe", value=b"", on_delivery=report)
        if producer.flush(10) == 0 and not failures:
            return
        assert time.monotonic() < deadline, failures
        time.sleep(0.5)


def _batch_seconds(exposition: str) -> dict[str, tuple[float, float]]:
    """Per stage: (seconds spent on batches, batches) so far."""
    return {
        stage: (
            metric_value(exposition, "stream_app_stage_batch_seconds_sum", stage=stage),
            metric_value(exposition, "stream_app_stage_batch_seconds_count", stage=stage),
        )
        for stage in ("intake", "consolidate")
    }


def _mean_batch_seconds(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Per stage: the mean time of one batch between two readings."""
    out = {}
    for stage, (seconds, count) in after.items():
        spent, batches = seconds - before[stage][0], count - before[stage][1]
        out[stage] = round(spent / batches, 3) if batches else 0.0
    return out


def test_a_flooding_reporter_does_not_delay_another_reporters_alarm(
    settings: Settings, blueprint: Blueprint, start_worker: Any, flooder: Settings
) -> None:
    worker = start_worker(settings)
    schema = blueprint.schemas.latest("observation")
    warm = observation(event_time=int(time.time() * 1000) - 60_000)  # the pipeline's first record: warm
    produce(settings, blueprint.input_topic("MAE").name, [(b"warm", codecs.encode(schema, warm))])
    collect(settings, blueprint.topic_by_role("consolidated").name, "consolidated", lambda r: len(r) >= 1)
    alerts = Alerts(settings, blueprint)
    flood: Flood | None = None
    try:
        quiet = [_latency(alerts, settings, blueprint, station) for station in QUIET_STATIONS]
        flood = Flood(flooder, blueprint.input_topic("MPS").name, _flood_records(blueprint))
        flood.start()
        before = _batch_seconds(worker.metrics())
        started = time.monotonic()
        while time.monotonic() - started < 5:  # the flood is on, its backlog grows
            time.sleep(0.05)
        flooded = [_latency(alerts, settings, blueprint, station) for station in FLOODED_STATIONS]
        # where the flood waits now: in MPS's topic (the intake's fair share) or re-keyed, ahead of
        # the stateful step, where each internal partition is read in order
        behind = {
            role: group_lag(settings, blueprint, [topic])
            for role, topic in (
                ("mps_input", blueprint.input_topic("MPS").name),
                ("internal", blueprint.topic_by_role("repartition").name),
            )
        }
        sent_during = flood.sent
        per_batch = _mean_batch_seconds(before, _batch_seconds(worker.metrics()))
    finally:
        alerts.stop()
        if flood is not None:
            flood.stop()
    # "Never delayed by more than a batch": the intake's batch in progress and the alarm's own, the
    # stateful step's (at most STREAM_APP_LIVE_MAX_AHEAD, half a batch, re-keyed ahead) and the
    # alarm's own — each as long as the worker took for one during the flood. Twice the quiet latency
    # when that is longer.
    median = statistics.median(quiet)
    bound = max(2 * median, median + 2 * (per_batch["intake"] + per_batch["consolidate"]))
    measured = {
        "quiet_s": quiet,
        "flooded_s": flooded,
        "bound_s": round(bound, 3),
        "batch_s": per_batch,
        "flood_sent": sent_during,
        **behind,
    }
    log.info("flood_alarm_latency", **measured)
    assert max(flooded) <= bound, measured
    assert worker.proc.poll() is None
