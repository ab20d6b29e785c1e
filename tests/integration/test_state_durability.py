"""Nothing lost when Redis goes (the state is a cache of the log).

A stream of ≥ 20,000 observations with duplicates, corrections and late values (``ground_truth.py``) is
applied by a worker whose Redis is a private one started as shipped (``deploy/local/services up redis``).
Every query-API answer about the touched entities and roll-ups is recorded, then Redis is SIGKILLed and
started again:

- with persistence (AOF everysec + RDB, the project's default) every answer is equal afterwards, and
  when the stream goes on nothing is counted twice: every aggregate equals the ground truth;
- without persistence (an empty Redis comes back) the worker does not apply on the empty state: it
  goes not ready, says ``state_lost``; with the workers stopped, ``stream-app state rebuild`` replays
  the log, and every answer of the worker started again is equal.

``make chaos`` runs the long version: ≥ 100,000 observations, Redis killed mid-stream three times.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.domain.catalogue import load_catalogue
from stream_app.exceptions import ConfigurationError
from stream_app.settings import Settings
from stream_app.tools import control
from stream_app.tools import state as state_tool
from stream_app.wire import codecs

from . import ground_truth as gt
from .support import ServicesRedis, api, group_lag, metric_value, probe, produce, worker_address
from .test_aggregates_chaos import _check_redis

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("CHAOS_SEED", "20251129"))
LONG = os.environ.get("CHAOS_LONG") == "1"  # `make chaos`: the whole stream, three kills
# a part of the ground truth's feeds for make test: over 20,000 records, every kind of indicator
SHORT_FEEDS = ("HYD.WATER_LEVEL", "PWR.SOURCE_SHARE", "FIN.CPI", "SSI.UNEMPLOYMENT", "PWR.OUTPUT_GWH")
COMPLIANCE_AT = "2025-09-01T00:00:00+07:00"
PrivateRedis = Callable[[bool], ServicesRedis]


@pytest.fixture
def private_redis(shipped_redis: Callable[..., ServicesRedis]) -> PrivateRedis:
    """A private Redis as shipped (``deploy/local/services up redis``: TLS, the ACL file, the app's own
    user); ``False``: persistence off, the one variant — a Redis that forgets, to prove the guard."""
    return lambda durable: shipped_redis("durable" if durable else "off")


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _stream(settings: Settings) -> gt.Stream:
    catalogue = load_catalogue(settings.catalogue_dir)
    full = gt.generate(SEED, lambda indicator, ms: catalogue.indicators[indicator].period_of(ms).label)
    if LONG:
        return full
    part = gt.Stream()
    part.feeds = {k: v for k, v in full.feeds.items() if k in SHORT_FEEDS}
    part.sent = [s for s in full.sent if s.record["indicator"] in SHORT_FEEDS]
    return part


def _setup(
    settings: Settings, own: ServicesRedis, least: int
) -> tuple[Settings, gt.Stream, gt.Expected, list[str]]:
    """Settings on the private Redis, the stream (at least ``least`` records), its truth, its entities."""
    local = settings.model_copy(
        update={"redis_url": SecretStr(own.url()), "redis_key_prefix": own.PREFIX, "batch_max": 300}
    )
    stream = _stream(local)
    exp = gt.expected(stream)
    assert len(stream.sent) >= least, len(stream.sent)
    return local, stream, exp, sorted(set(exp.entities.values()))


def _by_topic(blueprint: Blueprint, sent: list[gt.Sent]) -> dict[str, list[tuple[bytes | None, bytes]]]:
    schema = blueprint.schemas.latest("observation")
    out: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for s in sent:
        out[blueprint.input_topic(s.topic_reporter).name].append((s.key, codecs.encode(schema, s.record)))
    return out


def _applied(client: redis.Redis, settings: Settings, entities: list[str]) -> int:
    with client.pipeline(transaction=False) as pipe:
        for entity in entities:
            pipe.hlen(f"{settings.redis_key_prefix}:{{{entity}}}:seen")
        return sum(pipe.execute())


# These tests ask every answer of the API, one after the other, as fast as it answers (well over the
# per-token rate a person's screen needs): their workers let them (the limits: test_api_manners.py).
# They read the worker's own (opt-in) query API: the same answers as the screen's, never cached.
SWEEPING = {
    "STREAM_APP_API_REQUESTS_PER_S": "100000",
    "STREAM_APP_API_BURST": "100000",
    "STREAM_APP_WORKER_QUERY_API": "true",
}


def _answers(settings: Settings, exp: gt.Expected) -> dict[str, Any]:
    """Every query-API answer about the touched entities and roll-ups."""
    out: dict[str, Any] = {}
    for entity in sorted(set(exp.entities.values())):
        indicator, region, station = entity.split("|")
        where = {"indicator": indicator, "region": region} | ({"station": station} if station != "-" else {})
        for path in ("/latest", "/windows", "/periods"):
            out[f"{path} {entity}"] = api(settings, path, base=worker_address(settings), **where)
    for indicator, target, series, label in sorted(exp.rollups):
        query = {"indicator": indicator, "region": target, "period": label}
        query |= {"breakdown": series} if series else {}
        out[f"/rollups {indicator} {target} {series} {label}"] = api(
            settings, "/rollups", base=worker_address(settings), **query
        )
    out["/alerts/active"] = api(settings, "/alerts/active", base=worker_address(settings))
    out["/compliance"] = api(settings, "/compliance", base=worker_address(settings), at=COMPLIANCE_AT)
    assert sum(1 for status, _ in out.values() if status == 200) > len(out) // 2, "the answers are answers"
    return out


def _drained(
    settings: Settings, blueprint: Blueprint, client: redis.Redis, entities: list[str], n: int
) -> None:
    topics = [t.name for t in blueprint.input_topics()]
    topics += [blueprint.topic_by_role(role).name for role in ("repartition", "rollup")]
    _wait(lambda: _applied(client, settings, entities) >= n, 300, f"{n} observations applied")
    # a tick now: the timer rules (late reports, silent feeds) have their say before answers are read
    control.send_ticks(blueprint, None, source="test")
    _wait(lambda: group_lag(settings, blueprint, topics) == 0, 120, "the group's lag to reach 0")
    time.sleep(1.5)  # past one append-only fsync


@pytest.mark.timeout(1200)
def test_a_durable_redis_killed_comes_back_with_every_answer_and_counts_nothing_twice(
    settings: Settings, blueprint: Blueprint, start_worker: Any, private_redis: PrivateRedis
) -> None:
    own = private_redis(True)
    local, stream, exp, entities = _setup(settings, own, 20_000)
    assert min(exp.outcomes.values()) > 100, exp.outcomes  # duplicates and stale corrections

    cut = len(stream.sent) * 2 // 3
    first, rest = gt.Stream(stream.sent[:cut], stream.feeds), gt.Stream(stream.sent[cut:], stream.feeds)
    worker = start_worker(local, STREAM_APP_REDIS_URL=own.url(), STREAM_APP_BATCH_MAX="300", **SWEEPING)
    for topic, records in _by_topic(blueprint, first.sent).items():
        produce(local, topic, records)
    client = own.client()
    _drained(local, blueprint, client, entities, len(gt.expected(first).final))
    before = _answers(local, gt.expected(first))

    kills = 3 if LONG else 1
    for _ in range(kills):
        own.kill()
        own.start()  # `services up redis` on the same folder: it loads its append-only file
        assert own.loading_trouble() == []
        _wait(lambda: probe(local, "/readyz")[0] == 200, 60, "the worker to be ready again")
        assert _answers(local, gt.expected(first)) == before
        assert metric_value(worker.metrics(), "stream_app_state_lost", stage="consolidate") == 0
    assert worker.proc.poll() is None

    for topic, records in _by_topic(blueprint, rest.sent).items():
        produce(local, topic, records)
    _drained(local, blueprint, client, entities, len(exp.final))
    _check_redis(client, local, stream, exp)  # every aggregate exact: nothing applied twice


@pytest.mark.timeout(1200)
def test_an_empty_redis_is_never_applied_to_and_the_rebuild_restores_every_answer(
    settings: Settings, blueprint: Blueprint, start_worker: Any, private_redis: PrivateRedis
) -> None:
    own = private_redis(False)
    local, stream, exp, entities = _setup(settings, own, 20_000)
    worker = start_worker(local, STREAM_APP_REDIS_URL=own.url(), STREAM_APP_BATCH_MAX="300", **SWEEPING)
    for topic, records in _by_topic(blueprint, stream.sent).items():
        produce(local, topic, records)
    client = own.client()
    _drained(local, blueprint, client, entities, len(exp.final))
    before = _answers(local, exp)

    own.kill()
    own.start()  # no persistence: empty
    # a redelivered observation (a duplicate: it changes no answer) reaches the stateful step, whose
    # batch meets the empty state: it waits instead of applying
    topic, records = next(iter(_by_topic(blueprint, stream.sent[:1]).items()))
    produce(local, topic, records)
    _wait(
        lambda: metric_value(worker.metrics(), "stream_app_state_lost", stage="consolidate") == 1,
        60,
        "the worker to say its state is lost",
    )
    status, body = probe(local, "/readyz")
    assert status == 503, body
    assert "state_lost" in json.dumps(body)
    time.sleep(2)
    assert _applied(client, local, entities) == 0, "nothing is applied on the empty state"
    # the operator's tools run as the admin (the rebuild clears keys the app's user may not delete)
    admin = load_blueprint(local.model_copy(update={"redis_url": SecretStr(own.url("admin"))}))
    rows = state_tool.status(admin)
    assert any(row.problem for row in rows)

    with pytest.raises(ConfigurationError, match="live member"):
        state_tool.rebuild(admin, progress=False)  # the workers first
    worker.stop()  # a graceful stop, though it waits on the state
    report = state_tool.rebuild(admin, progress=False)
    print(
        f"\nrebuild: {report.records} records in {report.seconds:.1f} s = {report.rate:,.0f} records/s, "
        f"{report.entities} entities"
    )
    assert report.records >= len(stream.sent)
    assert all(row.problem is None for row in state_tool.status(admin))
    worker = start_worker(local, STREAM_APP_REDIS_URL=own.url(), STREAM_APP_BATCH_MAX="300", **SWEEPING)
    _wait(lambda: probe(local, "/readyz")[0] == 200, 60, "the worker to be ready on the rebuilt state")
    assert _answers(local, exp) == before
    assert metric_value(worker.metrics(), "stream_app_state_lost", stage="consolidate") == 0


@pytest.mark.timeout(1800)
@pytest.mark.skipif(not LONG, reason="make chaos: the whole stream, Redis killed three times mid-stream")
def test_a_durable_redis_killed_three_times_mid_stream_loses_and_doubles_nothing(
    settings: Settings, blueprint: Blueprint, start_worker: Any, private_redis: PrivateRedis
) -> None:
    own = private_redis(True)
    local, stream, exp, entities = _setup(settings, own, 100_000)
    worker = start_worker(local, STREAM_APP_REDIS_URL=own.url(), STREAM_APP_BATCH_MAX="300", **SWEEPING)
    for topic, records in _by_topic(blueprint, stream.sent).items():
        produce(local, topic, records)
    client = own.client()
    distinct = len(exp.final)
    gaps = []
    for share in (0.2, 0.45, 0.7):
        goal = share * distinct
        _wait(lambda: _applied(client, local, entities) >= goal, 300, f"{share:.0%} applied")  # noqa: B023
        own.kill()
        down = time.monotonic()
        time.sleep(2)  # the worker meets a dead Redis: it waits, acks nothing
        own.start()
        assert own.loading_trouble() == []
        client = own.client()
        before = _applied(client, local, entities)
        _wait(lambda: _applied(client, local, entities) > before, 120, "applying to go on")  # noqa: B023
        gaps.append(time.monotonic() - down)
    _drained(local, blueprint, client, entities, distinct)
    assert metric_value(worker.metrics(), "stream_app_state_lost", stage="consolidate") == 0
    _check_redis(client, local, stream, exp)  # every aggregate exact: nothing lost, nothing twice
    print(f"\nRedis killed 3 times mid-stream; seconds from each kill to applying again: {gaps}")
