"""Redis away, then the Kafka broker (separately), under a worker whose daily briefing
comes due during the outage and whose ticks run every 5 s (issue 24, "transient means transient
everywhere"): the worker stays up, answers ``/readyz`` 503 naming the dependency and the query API 503
naming it (never a 500, never a hang), comes back ready by itself, and nothing is lost or counted twice —
every observation applied once, every tick consumed, the day's briefing published exactly once.

Before, the briefing timer's Redis call let a ConnectionError escape and Faust ended the worker
(``Crashed reason=network:ConnectionError``) within a minute of an outage once the briefing time had
passed.

Each outage lasts 40 s in `make test` (``OUTAGE_S``), stretched until the briefing has come due and its
timer met the outage four more times; two minutes under ``CHAOS_LONG=1`` (`make chaos`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_app.config.blueprint import Blueprint
from stream_app.domain.clock import LOCAL_TZ
from stream_app.kafka.partitioning import TICK_KEY
from stream_app.settings import REPO_ROOT, Settings
from stream_app.wire import codecs

from .support import (
    API_TOKENS,
    SERVICES,
    ServicesRedis,
    WorkerProcess,
    decode_public,
    group_lag,
    observation,
    process_gone,
    produce,
    redis_hash,
    to_the_end,
    wait_until,
)

pytestmark = pytest.mark.chaos

LONG = os.environ.get("CHAOS_LONG") == "1"  # `make chaos`: each outage two minutes
# How long each dependency stays away at least. Long: twice the longest timer interval (the briefing's,
# at most 60 s), the length of a Redis restart or a broker failover that used to stop every worker.
# Short (`make test`): eight runs of the tick and briefing timers (every TICK_S here), more than two of
# the state audit (15 s), past Redis's connection health check (30 s) and the group's session timeout
# (6 s in the tests): every timer and probe meets the outage more than once.
OUTAGE_S = 120.0 if LONG else 40.0
BRIEFING_LEAD_S = 60 if LONG else 30  # the briefing comes due at least this long after the worker starts
TICK_S = 5  # STREAM_APP_TICK_INTERVAL_S: the briefing timer runs as often (min(60 s, the tick interval))
AFTER_DUE_S = 4 * TICK_S  # the outage lasts past the briefing's due time: four more runs of its timer
STATE_KEY = "{ENV.AQI|01|HN-AQ-HOANKIEM}:state"
FIRST, DURING = 12, 9  # observations before the outage, and during it (Redis) or after it (Kafka)
WORKER_ENV = {
    "STREAM_APP_TICK_INTERVAL_S": str(TICK_S),
    "STREAM_APP_RETRY_MAX_S": "2",  # back within 2 s of the dependency (5 s by default)
    "STREAM_APP_OPS_INTERVAL_S": "2",
    "STREAM_APP_BATCH_MAX": "5",
    # the worker's own (opt-in) reads: what these tests ask during the outages (the screen's process
    # answers the same way, through the same stream_app.api.http.answer)
    "STREAM_APP_WORKER_QUERY_API": "true",
}


def _briefing_time_soon() -> tuple[str, datetime, float]:
    """A briefing time (HH:MM:SS, Vietnam's local time) BRIEFING_LEAD_S from now — after the worker
    is ready, during the outage, which starts within seconds of that and lasts until past it — when
    that is, and when that is on the monotonic clock; 00:00 (due at once) near local midnight."""
    now = datetime.now(LOCAL_TZ)
    mono = time.monotonic()
    at = (now + timedelta(seconds=BRIEFING_LEAD_S)).replace(microsecond=0) + timedelta(seconds=1)
    if at.date() != now.date():
        return "00:00", now, mono
    return at.strftime("%H:%M:%S"), at, mono + (at - now).total_seconds()


def _get(settings: Settings, path: str, token: bool = False) -> tuple[int, Any, float]:
    """GET a worker's page: status, JSON body, seconds it took (a long timeout: a hang shows as one)."""
    url = f"http://{settings.web_host}:{settings.web_port}{path}"
    headers = {"Authorization": f"Bearer {API_TOKENS['viewer']}"} if token else {}
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local worker
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), time.monotonic() - started


def _post_directive(settings: Settings, key: str) -> tuple[int, Any, float]:
    quoted = urllib.parse.quote(key, safe="")
    url = f"http://{settings.web_host}:{settings.web_port}/api/v1/alerts/{quoted}/directives"
    headers = {"Authorization": f"Bearer {API_TOKENS['operator']}", "Content-Type": "application/json"}
    body = json.dumps({"action": "ACKNOWLEDGE", "comment": "during the outage"}).encode()
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local worker
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), time.monotonic() - started


def _readyz(settings: Settings) -> tuple[int, Any]:
    status, body, _ = _get(settings, "/readyz")
    return status, body


def _names(readyz: tuple[int, Any], dependency: str) -> bool:
    """Whether ``/readyz`` answers 503, its probe failing on ``dependency`` and naming it unavailable."""
    status, body = readyz
    return status == 503 and body["checks"][dependency] is False and dependency in body["unavailable"]


def _applied(client: Any, prefix: str) -> int:
    """Observations applied to the station's state (the hours' counts)."""
    state = redis_hash(client, f"{prefix}:{STATE_KEY}")
    return sum(int(v.split(b",")[0]) for k, v in state.items() if k.startswith(b"h::"))


def _readings(blueprint: Blueprint, tag: str, first: int, count: int) -> list[tuple[bytes, bytes]]:
    schema = blueprint.schemas.latest("observation")
    start = int(time.time() * 1000) - 3_600_000
    return [
        (
            b"HN-AQ-HOANKIEM",
            codecs.encode(
                schema,
                observation(observation_id=f"{tag}-{i}", value=40.0 + i % 7, event_time=start + i * 10_000),
            ),
        )
        for i in range(first, first + count)
    ]


def _sit_out(worker: WorkerProcess, until: float, check: Callable[[], None] = lambda: None) -> None:
    """Wait until ``until`` (monotonic), checking every few seconds that the worker is still there."""
    while time.monotonic() < until:
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()[-4000:]}"
        check()
        time.sleep(min(5.0, max(0.0, until - time.monotonic())))
    assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()[-4000:]}"


def _no_crash(worker: WorkerProcess) -> None:
    log = worker.log()
    for sign in ("Crashed reason", "agent_crashed"):
        assert sign not in log, f"{sign!r} in the worker's log:\n{log[-4000:]}"


def _briefings(settings: Settings, blueprint: Blueprint) -> list[str]:
    """The briefings published so far: the topic read to its end as it is now (not for a fixed 4 s: the
    checks that none came are made while the worker waits out the outage, or after the timer ran again)."""
    topic = blueprint.topic_by_role("briefings").name
    return [
        decode_public(blueprint, "briefing", m.value() or b"")["briefing_id"]
        for m in to_the_end(settings, topic)
        if m.value() is not None
    ]


def _one_briefing_for_today(settings: Settings, blueprint: Blueprint, due_at: datetime) -> None:
    """The day's briefing, published once: it comes (the timer had waited), and no second one follows."""
    yesterday = (due_at - timedelta(days=1)).date().isoformat()
    wait_until(
        lambda: f"briefing-{yesterday}" in _briefings(settings, blueprint),
        60,
        "the day's briefing to be published",
    )
    time.sleep(3 * TICK_S)  # three more runs of the briefing timer
    ids = _briefings(settings, blueprint)
    assert ids.count(f"briefing-{yesterday}") == 1, ids


def _ticks(settings: Settings, blueprint: Blueprint) -> int:
    internal = blueprint.topic_by_role("repartition").name
    return sum(m.key() == TICK_KEY for m in to_the_end(settings, internal))


def _report(what: str, **figures: object) -> None:
    print(f"\n[dependency outage] {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture
def own_redis(shipped_redis: Callable[..., ServicesRedis]) -> ServicesRedis:
    """A private Redis as shipped (the app's ACL user, TLS, AOF + RDB): this test kills and restarts it."""
    return shipped_redis()


@pytest.mark.timeout(600)
def test_redis_away_stops_nothing_and_loses_nothing(
    settings: Settings, blueprint: Blueprint, start_worker: Any, own_redis: ServicesRedis
) -> None:
    briefing_time, due_at, due_mono = _briefing_time_soon()
    started = time.monotonic()
    local = settings.model_copy(update={"redis_key_prefix": own_redis.PREFIX})
    worker = start_worker(
        local, STREAM_APP_REDIS_URL=own_redis.url(), STREAM_APP_BRIEFING_TIME=briefing_time, **WORKER_ENV
    )
    admin = own_redis.client()
    topic = blueprint.input_topic("MAE").name
    produce(local, topic, _readings(blueprint, "redis-outage", 0, FIRST))
    wait_until(lambda: _applied(admin, own_redis.PREFIX) == FIRST, 30, "the first observations applied")
    wait_until(lambda: _readyz(local)[0] == 200, 30, "the worker to be ready")
    assert not _briefings(local, blueprint), "the briefing is due during the outage, not before"
    ticks_before = _ticks(local, blueprint)

    own_redis.kill()  # SIGKILL: no shutdown save
    down_at = time.monotonic()
    assert briefing_time == "00:00" or down_at < due_mono, "the briefing comes due during the outage"
    produce(local, topic, _readings(blueprint, "redis-outage", FIRST, DURING))  # Kafka takes them meanwhile
    noticed = wait_until(lambda: _names(_readyz(local), "redis"), 30, "/readyz to name redis")
    status, body, took = _get(local, "/api/v1/latest?indicator=ENV.AQI&station=HN-AQ-HOANKIEM", token=True)
    assert (status, body["error"], body["dependency"]) == (503, "unavailable", "redis"), body
    assert took < 10, f"the API took {took:.1f} s to answer 503"

    def still_waiting() -> None:
        assert _readyz(local)[0] == 503

    _sit_out(worker, max(down_at + OUTAGE_S, due_mono + AFTER_DUE_S), still_waiting)
    assert not _briefings(local, blueprint), "no briefing without its marker"
    waiting = _readyz(local)[1]["waiting_for"]
    _no_crash(worker)

    own_redis.up()
    up_at = time.monotonic()
    ready_after = wait_until(lambda: _readyz(local)[0] == 200, 90, "the worker to be ready again")
    applied_after = wait_until(
        lambda: _applied(admin, own_redis.PREFIX) >= FIRST + DURING, 60, "the observations of the outage"
    )
    status, body, _ = _get(local, "/api/v1/latest?indicator=ENV.AQI&station=HN-AQ-HOANKIEM", token=True)
    assert status == 200, body
    _one_briefing_for_today(local, blueprint, due_at)
    assert _applied(admin, own_redis.PREFIX) == FIRST + DURING, "each observation applied exactly once"
    internal = blueprint.topic_by_role("repartition").name
    wait_until(lambda: group_lag(local, blueprint, [internal]) == 0, 60, "every record consumed")
    ticks = _ticks(local, blueprint)
    assert ticks - ticks_before >= OUTAGE_S / TICK_S / 2, (ticks_before, ticks)
    assert worker.proc.poll() is None
    _no_crash(worker)
    assert not own_redis.loading_trouble()
    _report(
        "redis",
        ready_and_down_after_s=round(down_at - started, 1),
        outage_s=round(up_at - down_at),
        readyz_named_redis_after_s=round(noticed, 1),
        waiting_for=waiting,
        ready_again_after_s=round(ready_after, 1),
        applied_after_s=round(applied_after, 1),
        briefing_time=briefing_time,
        briefing_due_after_down_s=round(due_mono - down_at, 1),
        ticks_during=ticks - ticks_before,
    )


# ----------------------------------------------------------------------------------------- the broker


def _services_state() -> Path:
    """The state directory of the services the environment points at (``env admin`` names its secrets)."""
    secrets = os.environ.get("SERVICES_SECRETS_DIR")
    return Path(secrets).parent if secrets else REPO_ROOT / ".local"


@pytest.fixture
def broker_killer() -> Iterator[Callable[[], None]]:
    """SIGKILLs the local services' broker when called; whatever happens, ``deploy/local/services up``
    starts it again at teardown (later tests need it)."""
    state = _services_state()
    killed: list[int] = []

    def kill() -> None:
        pid = int((state / "kafka" / "kafka.pid").read_text(encoding="utf-8").strip())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        wait_until(lambda: process_gone(pid), 30, "the broker to exit")

    try:
        yield kill
    finally:
        if killed:
            _broker_up(state)


def _broker_up(state: Path) -> float:
    started = time.monotonic()
    subprocess.run(
        [str(SERVICES), "up"],
        env={**os.environ, "SERVICES_STATE_DIR": str(state)},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.monotonic() - started


@pytest.mark.timeout(600)
def test_the_broker_away_stops_nothing_and_loses_nothing(
    settings: Settings, blueprint: Blueprint, start_worker: Any, broker_killer: Callable[[], None]
) -> None:
    briefing_time, due_at, due_mono = _briefing_time_soon()
    started = time.monotonic()
    worker = start_worker(settings, STREAM_APP_BRIEFING_TIME=briefing_time, **WORKER_ENV)
    admin = redis.Redis.from_url(settings.redis_url.get_secret_value())
    prefix = settings.redis_key_prefix
    topic = blueprint.input_topic("MAE").name
    produce(settings, topic, _readings(blueprint, "kafka-outage", 0, FIRST))
    wait_until(lambda: _applied(admin, prefix) == FIRST, 30, "the first observations applied")
    wait_until(lambda: _readyz(settings)[0] == 200, 30, "the worker to be ready")
    assert not _briefings(settings, blueprint), "the briefing is due during the outage, not before"
    ticks_before = _ticks(settings, blueprint)

    broker_killer()
    down_at = time.monotonic()
    assert briefing_time == "00:00" or down_at < due_mono, "the briefing comes due during the outage"
    noticed = wait_until(lambda: _names(_readyz(settings), "kafka"), 30, "/readyz to name kafka")
    # reads need only Redis: still answered
    status, body, _ = _get(settings, "/api/v1/latest?indicator=ENV.AQI&station=HN-AQ-HOANKIEM", token=True)
    assert status == 200, body
    # a directive needs Kafka: refused at once, naming it, and nothing is left to be published later
    status, body, took = _post_directive(settings, "levels:ENV.AQI|ENV.AQI|01|HN-AQ-HOANKIEM")
    assert (status, body["error"], body["dependency"]) == (503, "unavailable", "kafka"), body
    assert took < 10, f"the directive took {took:.1f} s to be refused"

    def still_waiting() -> None:
        assert _readyz(settings)[0] == 503

    _sit_out(worker, max(down_at + OUTAGE_S, due_mono + AFTER_DUE_S), still_waiting)
    waiting = _readyz(settings)[1]["waiting_for"]
    _no_crash(worker)

    restart_s = _broker_up(_services_state())
    up_at = time.monotonic()
    ready_after = wait_until(lambda: _readyz(settings)[0] == 200, 120, "the worker to be ready again")
    produce(settings, topic, _readings(blueprint, "kafka-outage", FIRST, DURING))
    applied_after = wait_until(
        lambda: _applied(admin, prefix) >= FIRST + DURING, 60, "the observations sent after the outage"
    )
    _one_briefing_for_today(settings, blueprint, due_at)
    assert _applied(admin, prefix) == FIRST + DURING, "each observation applied exactly once"
    internal = blueprint.topic_by_role("repartition").name
    wait_until(lambda: group_lag(settings, blueprint, [internal]) == 0, 60, "every tick consumed")
    ticks = _ticks(settings, blueprint)
    assert ticks > ticks_before, (ticks_before, ticks)
    directives = blueprint.topic_by_role("directives").name
    assert not to_the_end(settings, directives), "the refused directive was never published"
    assert worker.proc.poll() is None
    _no_crash(worker)
    _report(
        "kafka",
        ready_and_down_after_s=round(down_at - started, 1),
        outage_s=round(up_at - down_at),
        broker_restart_s=round(restart_s, 1),
        readyz_named_kafka_after_s=round(noticed, 1),
        waiting_for=waiting,
        ready_again_after_s=round(ready_after, 1),
        applied_after_s=round(applied_after, 1),
        briefing_time=briefing_time,
        briefing_due_after_down_s=round(due_mono - down_at, 1),
        ticks_after=ticks - ticks_before,
    )
