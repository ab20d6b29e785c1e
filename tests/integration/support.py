"""Helpers for integration tests: real producers and consumers, worker processes, metrics parsing."""

from __future__ import annotations

import asyncio
import json
import os
import re
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.aggregates import chart_frequency, period_by_label, same_period_last_year
from stream_app.domain.calendar import PERIODS_PER_YEAR, periods_up_to
from stream_app.domain.clock import DAY_MS
from stream_app.domain.entity import retention_start_ms
from stream_app.kafka import registry
from stream_app.kafka.config import confluent_config, security_env
from stream_app.settings import Settings
from stream_app.tools.launch import Launched
from stream_app.wire import codecs

T = TypeVar("T")

# The API tokens the test workers accept, by role (made by the session's api_tokens_file fixture).
API_TOKENS: dict[str, str] = {}


def api(
    settings: Settings,
    path: str,
    *,
    role: str | None = "viewer",
    body: Any = None,
    base: str | None = None,
    **params: str,
) -> tuple[int, Any]:
    """Call the query API at ``/api/v1<path>`` as ``role`` (None: no token); GET, or POST ``body``. It is
    the screen's process (``start_screen``: readers never reach a worker), which forwards directives to
    the workers; ``base``: another server (a worker's, for its directives or its opt-in reads)."""
    query = urllib.parse.urlencode(params)
    base = base or api_address(settings)
    url = f"{base}/api/v1{path}" + (f"?{query}" if query else "")
    headers = {"Authorization": f"Bearer {API_TOKENS[role]}"} if role else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 - http to the local screen
        url, data=data, headers=headers, method="POST" if data else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the local screen
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def api_address(settings: Settings) -> str:
    """Where the test's query API answers: its screen's process, once that answers (it is started
    without waiting, beside the worker)."""
    address = f"http://{settings.screen_host}:{settings.screen_port}"
    screen = SCREENS.get(address)
    if screen is not None and not screen.answering:
        screen.wait_healthy(f"{address}/livez", timeout=60)
        screen.answering = True
    return address


@dataclass
class ScreenProcess(Launched):
    """A real ``stream-app screen`` process: the page, the query API and live alerts."""

    answering: bool = field(default=False, kw_only=True)

    def failed(self, message: str) -> NoReturn:
        pytest.fail(f"{message}:\n{self.log()[-4000:]}")


# The screens the tests started, by address: ``api()`` waits for its test's one to answer.
SCREENS: dict[str, ScreenProcess] = {}


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
        "screen_host",
        "screen_port",
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
class WorkerProcess(Launched):
    """A real ``stream-app worker`` process (see :mod:`stream_app.tools.launch`), failing the test when it
    does not become ready."""

    settings: Settings

    def failed(self, message: str) -> NoReturn:
        pytest.fail(f"{message}:\n{self.log()[-4000:]}")

    def metrics(self) -> str:
        url = f"http://{self.settings.web_host}:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


def encode_alert(bp: Any, alert_id: str = "a") -> bytes:
    """An alert record (the latest contract) firing for ENV.AQI in region 01: for tests that need one
    on a topic without running the rules."""
    alert = {
        "alert_id": alert_id,
        "alert_key": "k",
        "rule": "r",
        "transition": "FIRING",
        "indicator": "ENV.AQI",
        "reporter": "MAE",
        "region": "01",
        "station": None,
        "value": 1.0,
        "threshold": None,
        "level": 1,
        "previous_level": 0,
        "level_code": "X",
        "level_name_vi": "X",
        "level_name_en": "X",
        "colour": "#000000",
        "observation_id": "o",
        "event_time": 0,
        "processing_time": 0,
    }
    return codecs.encode(bp.schemas.latest("alert"), alert)


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


def directive_on_topic(
    settings: Settings,
    blueprint: Any,
    *,
    alert_key: str,
    action: str = "ACKNOWLEDGE",
    alert_id: str = "",
    actor: str = "test-operator",
    token_id: str = "",
    writer: str = "",
    comment: str | None = None,
) -> str:
    """Produce a directive straight onto the center's directives topic, as ``settings``' principal (the
    tests' admin, a super user: the only one besides the workers the broker lets write it), claiming
    whatever identity it is given; its id. Proves what the workers do with a record no API wrote (empty
    ``token_id``/``writer``), or with one as the API writes them (``writer`` the workers' principal)."""
    directive_id = f"dir-{uuid.uuid4().hex[:16]}"
    record = {
        "directive_id": directive_id,
        "alert_key": alert_key,
        "alert_id": alert_id,
        "reporter": "",
        "action": action,
        "actor": actor,
        "assignee": None,
        "comment": comment,
        "issued_at": int(time.time() * 1000),
        "due_at": None,
        "token_id": token_id,
        "writer": writer,
    }
    value = codecs.encode(blueprint.schemas.latest("directive"), record)
    produce(settings, blueprint.topic_by_role("directives").name, [(alert_key.encode(), value)])
    return directive_id


def direct(settings: Settings, alert_key: str, role: str | None = "operator", **body: Any) -> tuple[int, Any]:
    """Post a directive about ``alert_key`` straight to the worker (where the screen forwards it) as
    ``role``: (status, JSON answer)."""
    path = f"/alerts/{urllib.parse.quote(alert_key, safe='')}/directives"
    return api(settings, path, role=role, body=body, base=worker_address(settings))


def worker_address(settings: Settings) -> str:
    """The test worker's HTTP server: probes, metrics and the directives it takes."""
    return f"http://{settings.web_host}:{settings.web_port}"


def open_aqi_alert(settings: Settings, blueprint: Any) -> dict[str, Any]:
    """Two consecutive 'bad' readings at Hoàn Kiếm: the open VN_AQI alert (its FIRING change)."""
    schema = blueprint.schemas.latest("observation")
    now = int(time.time() * 1000)
    readings = [
        (b"HN-AQ-HOANKIEM", codecs.encode(schema, observation(value=v, event_time=now - (3 - i) * 60_000)))
        for i, v in enumerate((180.0, 190.0))
    ]
    produce(settings, blueprint.input_topic("MAE").name, readings)
    fired = collect(
        settings,
        blueprint.topic_by_role("alerts").name,
        "alert",
        lambda r: any(a["transition"] == "FIRING" for a in r),
    )
    return next(a for a in fired.records if a["transition"] == "FIRING")


def as_the_api(settings: Settings) -> dict[str, str]:
    """The identity fields the workers' API writes in a directive (``directive_on_topic``)."""
    return {"token_id": "0123456789ab", "writer": f"User:{settings.acl_app_user}", "actor": "test-operator"}


@dataclass
class Collected:
    """Records read from one output topic, decoded."""

    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)


def reader(settings: Settings) -> Consumer:
    """A consumer for the tests to read with. Its group (confluent-kafka wants one) is its own and never
    joined unless it subscribes: readers that are assigned their partitions commit nothing and wait on
    no rebalance (0.1 s a read rather than 0.2-0.8 s)."""
    return Consumer(
        {
            **confluent_config(settings),
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )


def messages(settings: Settings, topic: str, stop: Callable[[], bool], timeout: float) -> Iterator[Any]:
    """Messages of ``topic`` from the beginning, until ``stop()`` or the timeout: every partition the
    topic has when the read starts, assigned (a topic not there yet: subscribed to, as a fresh group)."""
    consumer = reader(settings)
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
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

    Records are Avro single-object encoded or Confluent-framed, their ids resolved by ``resolve`` (by
    default: through the settings' registry, :func:`public_resolver`).
    """
    out = Collected()
    schemas = load_blueprint(settings).schemas
    resolve = resolve or public_resolver(settings)
    for message in messages(settings, topic, lambda: until(out.records), timeout):
        out.records.append(off_loop(codecs.decode, schemas, subject, message.value() or b"", resolve))
        out.keys.append(message.key())
    return out


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """Confluent's client for the configured registry (its CA from the settings); skips without one."""
    url = (settings.schema_registry_url or "").strip()
    if not url or url.startswith("mock://"):
        pytest.skip(
            "no schema registry configured (STREAM_APP_SCHEMA_REGISTRY_URL): run `deploy/local/services up`"
        )
    client = registry.client_from_settings(settings)
    assert isinstance(client, SchemaRegistryClient)
    try:
        client.get_subjects()
    except Exception as exc:  # any failure means the same thing here
        client.close()
        pytest.skip(
            f"the schema registry at {registry.redact(url)} does not answer ({type(exc).__name__}: {exc})"
        )
    return client


_RESOLVERS: dict[tuple[str, str], registry.ConfluentSchemas] = {}


def public_resolver(settings: Settings) -> registry.ConfluentSchemas | None:
    """The Confluent ids of the settings' registry (None without one), as ``stream-app tail`` resolves
    them; one per registry for the session, so each id is asked once."""
    key = (str(settings.schema_registry_url or ""), str(settings.schema_registry_ca_file or ""))
    if key not in _RESOLVERS:
        resolver = registry.from_settings(settings, load_blueprint(settings).schemas)
        if resolver is None:
            return None
        _RESOLVERS[key] = resolver
    return _RESOLVERS[key]


def decode_public(blueprint: Blueprint, subject: str, raw: bytes) -> dict[str, Any]:
    """A record of a public topic (``center.*``, dead letters, directives) in either framing, told apart
    by its first byte: what the worker writes by default (Confluent) or with single_object."""
    return off_loop(codecs.decode, blueprint.schemas, subject, raw, public_resolver(blueprint.settings))


def off_loop(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` off any event loop running in this thread (Playwright's sync API runs one in the
    test's): the registry resolver looks a new id up only off an event loop, as a worker's must."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call(*args)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call, *args).result()


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
    return all_to_the_end(settings, [topic], timeout)[topic]


def all_to_the_end(settings: Settings, topics: Sequence[str], timeout: float = 30.0) -> dict[str, list[Any]]:
    """:func:`to_the_end` of each of ``topics``, read by one consumer (one connection, one set of
    round trips, rather than one consumer a topic)."""
    consumer = reader(settings)
    out: dict[str, list[Any]] = {topic: [] for topic in topics}
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if high > low:
                    ends[(topic, partition)] = high
        consumer.assign([TopicPartition(topic, p, 0) for topic, p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            at = (message.topic() or "", message.partition() or 0)
            out[at[0]].append(message)
            if (message.offset() or 0) + 1 >= ends.get(at, 0):
                ends.pop(at, None)
        assert not ends, f"could not read {sorted({t for t, _ in ends})} to the end: {ends}"
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


@dataclass(frozen=True)
class History:
    """A year of an entity's history as sent (:func:`a_year_of_history`): the observations, oldest first,
    and what ``GET /api/v1/history`` should answer per period label: (value, same period the year before)."""

    observations: list[dict[str, Any]]
    expected: dict[str, tuple[float, float | None]]


def a_year_of_history(
    blueprint: Blueprint, indicator: str, *, region: str, station: str | None, base: float, step: float = 0.25
) -> History:
    """One observation in each period of the indicator's chart (its past year, ``chart_frequency``) and
    in the same period the year before where the state still keeps it: ``base + step * i`` in the i-th
    period of the year, one less the year before. Reported by the indicator's owner, now."""
    spec = blueprint.catalogue.indicators[indicator]
    now_ms = int(time.time() * 1000)
    frequency = chart_frequency(spec.frequency)
    year = periods_up_to(frequency, spec.calendar, now_ms, PERIODS_PER_YEAR[frequency], spec.deadline_day)
    kept_from = retention_start_ms(spec, now_ms - 60_000)
    sent: list[dict[str, Any]] = []
    expected: dict[str, tuple[float, float | None]] = {}

    def point(label: str, value: float, at: int) -> None:
        sent.append(
            observation(
                observation_id=f"history-{indicator}-{station or region}-{label}",
                reporter=spec.owner,
                indicator=indicator,
                region=region,
                station=station,
                unit=spec.unit,
                value=value,
                event_time=at,
                report_time=now_ms,
            )
        )

    for n, period in enumerate(year):
        before = period_by_label(same_period_last_year(period.label), spec.calendar, spec.deadline_day)
        value, earlier = base + step * n, base - 1 + step * n
        point(period.label, value, max(period.start_ms, min(period.start_ms + DAY_MS, now_ms - 60_000)))
        kept = before.start_ms + DAY_MS >= kept_from
        if kept:
            point(before.label, earlier, before.start_ms + DAY_MS)
        expected[period.label] = (value, earlier if kept else None)
    return History(sorted(sent, key=lambda r: int(r["event_time"])), expected)


def probe(settings: Settings, path: str) -> tuple[int, Any]:
    """A worker's HTTP page (``/readyz``, ``/health`` ...): its status and JSON body, errors included."""
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


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


def wait_consumed(settings: Settings, blueprint: Any, topics: list[str], timeout: float = 30.0) -> float:
    """Wait until the worker's group has consumed and committed every record of ``topics`` (seconds it
    took). A worker publishes what a record causes before it commits the record: every output topic then
    holds all it ever will for them, and can be read to its end rather than for a fixed few seconds."""
    return wait_until(lambda: group_lag(settings, blueprint, topics) == 0, timeout, "every record consumed")


def wait_settled(settings: Settings, blueprint: Any, *reporters: str, timeout: float = 30.0) -> float:
    """:func:`wait_consumed` of what the worker is given: the ``reporters``' input topics, the center's
    directives and the internal topic (where both are applied): every output they cause is then out."""
    given = [blueprint.input_topic(r).name for r in reporters]
    given += [blueprint.topic_by_role(role).name for role in ("directives", "repartition")]
    return wait_consumed(settings, blueprint, given, timeout)


def audit_trail(settings: Settings, blueprint: Blueprint) -> list[dict[str, Any]]:
    """The audit topic to its end, decoded (after :func:`wait_settled`: an API's audit record is out
    before it answers, a worker's before it commits what caused it)."""
    return [
        decode_public(blueprint, "audit", m.value() or b"")
        for m in to_the_end(settings, blueprint.topic_by_role("audit").name)
    ]


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


SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services"
LOADING_TROUBLE = re.compile(
    r"NOPERM|AOF-loading-client|CRITICAL|Bad file format|Unrecoverable|Unexpected end of file|short read"
    r"|truncated|[Cc]orrupt|Wrong RDB checksum|Error reading",
    re.IGNORECASE,
)
"""What redis-server logs when it could not replay all of its append-only file or snapshot."""


class ServicesRedis:
    """A Redis started by ``deploy/local/services up redis`` in a state directory of the test's own, on
    a free port: the same script, configuration, ACL file (the default user, the app's and the
    screen's users with the prefix ``sa``), TLS and persistence (AOF everysec + RDB) as ``make
    services`` ships, so what a test proves of it holds where users run it. ``credentials``: a state
    directory whose ``tls`` and ``secrets`` are copied (made once per session: 2-3 s)."""

    PREFIX = "sa"  # the key prefix the shipped users may touch

    def __init__(self, state: Path, credentials: Path | None = None, persistence: str = "durable") -> None:
        self.state = state
        self.port = free_port()
        self.persistence = persistence
        if credentials is not None:
            for folder in ("tls", "secrets"):
                shutil.copytree(credentials / folder, state / folder)
        self._log_from = 0  # where the current start's lines begin in redis.log

    def run(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICES_")}
        env.update(
            SERVICES_STATE_DIR=str(self.state),
            SERVICES_REDIS_PORT=str(self.port),
            SERVICES_MONITORING="0",
            SERVICES_REDIS_PERSISTENCE=self.persistence,
        )
        done = subprocess.run(
            [str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"services {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def up(self) -> str:
        """Start it (``services up redis``: a stale pid file after a kill is noticed and replaced)."""
        log = self.log_path
        self._log_from = log.stat().st_size if log.exists() else 0
        return self.run("up", "redis")

    start = up

    def down(self) -> None:
        """A clean stop (``services down redis``: SIGTERM, Redis saves and exits)."""
        self.run("down", "redis")

    stop = down

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as a crash or an OOM kill."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not process_gone(pid):
            if time.monotonic() > deadline:
                pytest.fail(f"redis pid {pid} still there 10 s after SIGKILL")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return int((self.state / "redis" / "redis.pid").read_text(encoding="utf-8"))

    @property
    def log_path(self) -> Path:
        return self.state / "redis" / "redis.log"

    def loading_trouble(self) -> list[str]:
        """The lines of the current start's log that say loading went wrong (none is the only answer a
        test of durability accepts)."""
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as log:
            log.seek(self._log_from)
            lines = log.read().decode("utf-8", "replace").splitlines()
        return [line for line in lines if LOADING_TROUBLE.search(line)][:20]

    def secret(self, name: str) -> str:
        return (self.state / "secrets" / name).read_text(encoding="utf-8").strip()

    def url(self, user: str = "stream-app") -> str:
        """The rediss:// URL of a shipped user (``stream-app``: the worker's; ``center``: the screen's;
        ``admin``), as ``deploy/local/services env`` prints it."""
        password = urllib.parse.quote(self.secret(f"redis-{user}"), safe="")
        ca = self.state / "tls" / "ca.pem"
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    def client(self, user: str = "admin") -> Any:
        """A connection as ``user``; ``Any``: redis-py types its replies as unions with ``Awaitable``."""
        return redis.Redis.from_url(self.url(user), socket_timeout=5)


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


APP_LIKE_COMMIT = """
for k = 1, #KEYS do redis.call('HSET', KEYS[k], ARGV[1], ARGV[2]) end
redis.call('ZADD', KEYS[1] .. '-index', ARGV[3], ARGV[1])
return #KEYS
"""
"""A script with several writes in one hash slot, as the app's entity commit: Redis 7.0 writes its
effects to the append-only file as one MULTI/EXEC."""


def fill_like_the_app(server: ServicesRedis, count: int, tag: str = "") -> None:
    """Keys of every kind the app writes, written the ways it writes them: as the app's own Redis user,
    scripts with several writes (MULTI/EXEC in the append-only file), single-write scripts, plain
    pipelined commands; and as the admin, a MULTI/EXEC transaction, binary values, an expiry."""
    app = server.client("stream-app")
    commit = app.register_script(APP_LIKE_COMMIT)
    pipe = app.pipeline(transaction=False)
    for i in range(count):
        entity = f"{{e{tag}{i % 17}}}"
        keys = [f"sa:{entity}:state", f"sa:{entity}:seen", f"sa:{entity}:periods"]
        commit(keys=keys, args=[f"off{i}", f"{i},{i * 0.5}", i], client=pipe)
        pipe.set(f"sa:{entity}:k{i}", f"v{i}".encode() + bytes([i % 256]))
    pipe.hset(f"sa:{{e{tag}1}}:state", mapping={f"h::{i}": f"{i},{i * 0.5}" for i in range(300)})
    pipe.sadd(f"sa:reporter:{tag}MAE:entities", *[f"e{i}" for i in range(100)])
    pipe.set(f"sa:{{meta}}:applied:{tag}internal:0", str(count))
    pipe.execute()
    app.close()
    admin = server.client()
    with admin.pipeline(transaction=True) as multi:
        multi.rpush(f"sa:{tag}list", *[bytes(range(256)), b"", b"x"])
        multi.set(f"sa:{tag}expiring", "soon", ex=3600)
        multi.incrby(f"sa:{tag}counter", 7)
        multi.execute()
    admin.close()


def snapshot(client: Any) -> dict[bytes, tuple[bytes, object, bool]]:
    """Every key: its type, its whole value, whether it expires."""
    keys = sorted(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.ttl(key)
    found = pipe.execute()
    kinds, ttls = found[0::2], found[1::2]
    read = {
        b"string": pipe.get,
        b"hash": pipe.hgetall,
        b"set": pipe.smembers,
        b"zset": lambda key: pipe.zrange(key, 0, -1, withscores=True),
        b"list": lambda key: pipe.lrange(key, 0, -1),
    }
    for key, kind in zip(keys, kinds, strict=True):
        read[kind](key)
    values = pipe.execute()
    return {
        key: (kind, value, ttl > 0) for key, kind, value, ttl in zip(keys, kinds, values, ttls, strict=True)
    }
