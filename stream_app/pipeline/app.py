"""The Faust application factory: ``create_app(settings)`` builds a worker's app and its agents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.tables import TableManager
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.api import http as api
from stream_app.api.read_model import ReadModel
from stream_app.config.blueprint import REPORTER_INPUT_ROLES, Blueprint, load_blueprint
from stream_app.kafka import fetch_bounds
from stream_app.kafka.config import faust_credentials
from stream_app.kafka.fetch_bounds import FetchLimits
from stream_app.kafka.lanes import Lanes, LaneTransport
from stream_app.kafka.producer import DirectProducer
from stream_app.kafka.subjects import output_framing
from stream_app.ops import metrics, retry
from stream_app.pipeline.probes import Operations
from stream_app.settings import Settings
from stream_app.state.store import StateStore, connect
from stream_app.wire.framing import Framing


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust configuration tuned for a small broker and quick group joins."""
    return {
        "broker": [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",")],
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        "TableManager": StateInRedisTableManager,
        "datadir": str(settings.data_dir / settings.group_id),
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_in_thread": False,
        # Faust's own pages are off: /router names every worker's host and the partitions it owns,
        # /table serves table data, / and /graph the worker's internals. Nothing here routes by
        # table key (no @table_route); the worker's pages are its own (_register_pages, the API).
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "broker_session_timeout": settings.broker_session_timeout_s,
        "broker_heartbeat_interval": settings.broker_heartbeat_interval_s,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        # On stop, do not drain buffered events: a batch interrupted mid-way withholds its acks
        # (see agents/_batch.py) and is redelivered to the next owner.
        "stream_wait_empty": False,
        # The leader-assignor topic is unused by this app; skipping it saves a topic per app id.
        "topic_disable_leader": True,
        "producer_acks": -1,
        "producer_linger": 0.005,
        "producer_max_batch_size": 256 * 1024,
        # Outputs are size-checked against STREAM_APP_OUTPUT_MAX_BYTES before they are sent; the
        # producer's own per-record limit must never be the tighter one.
        "producer_max_request_size": max(1_048_576, settings.output_max_bytes + 64 * 1024),
        "stream_buffer_maxsize": max(4096, settings.batch_max * 4),
        # aiokafka reads this many records per poll (unset: every fetched partition's records at once,
        # each batch inflated: a fetch's worth of memory before a lane could say it is full)
        "broker_max_poll_records": settings.batch_max,
    }


class StateInRedisTableManager(TableManager):
    """Faust's table manager, without its start-up pause: it sleeps a second before registering the
    app's tables, for tables an agent defines late. This app keeps its state in Redis and defines none,
    so every worker start (a rolling restart, a rebalance storm, each test) waited a second for
    nothing. With tables, Faust's own behaviour."""

    async def on_start(self) -> None:
        if len(self):
            await super().on_start()
            return
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class StreamApp(faust.App):
    """Faust's app with the stages' lanes (:mod:`stream_app.kafka.lanes`: records handed to a stage a
    fetch at a time), and without Faust's default Monitor sensor: it keeps per-event statistics in
    memory on the hot path that nothing here reads (the Prometheus metrics are the project's own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lanes = Lanes()
        self.stream_settings: Settings | None = (
            None  # the project's settings (the consumer thread's fetch sizing)
        )
        self.closers: list[Callable[[], None]] = []  # called once the app stopped (the outputs' producer)
        # the topics other parties write (the reporters'): on librdkafka, fetched by a bounded reader
        self.reporter_topics: frozenset[str] = frozenset()

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return dependencies

    async def on_stop(self) -> None:
        await super().on_stop()
        for close in self.closers:
            close()

    def _new_transport(self) -> Any:
        settings = self.stream_settings
        if settings is not None and settings.consumer_driver == "librdkafka":
            from stream_app.kafka.rdlanes import RdLaneTransport  # confluent-kafka's consumer, when chosen

            return RdLaneTransport(self.conf.broker_consumer, self)
        return LaneTransport(self.conf.broker_consumer, self)

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.lanes.drop(revoked)  # what a lane holds of a revoked partition is never processed here
        await super()._on_partitions_revoked(revoked)


def create_app(
    settings: Settings, blueprint: Blueprint | None = None, framing: Framing | None = None
) -> faust.App:
    """Build the Faust app with its agents and HTTP pages, from ``settings`` alone.

    ``framing``: how outputs are framed (:func:`stream_app.kafka.subjects.output_framing`, which waits for
    the schema registry with ``STREAM_APP_OUTPUT_FRAMING=confluent``; made here when not given)."""
    # agents import the app's building blocks: importing them here keeps this module importable alone
    from stream_app.agents import (
        alert_bridge,
        briefing,
        consolidate,
        directives,
        intake,
        rollup,
        state_audit,
        ticker,
    )
    from stream_app.kafka.publisher import Publisher

    blueprint = blueprint or load_blueprint(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fetch_bounds.install(FetchLimits.from_settings(settings))  # before any consumer fetches
    app = StreamApp(settings.group_id, **faust_settings(settings))
    app.stream_settings = settings
    app.reporter_topics = frozenset(t.name for t in blueprint.topics if t.role in REPORTER_INPUT_ROLES)
    redis_client = connect(settings)
    store = StateStore(redis_client, settings)
    framing = framing or output_framing(blueprint)
    sender = DirectProducer(settings, client_id=f"{settings.group_id}-outputs")
    publisher = Publisher(sender, settings, blueprint.schemas.latest("dead_letter"), framing)
    app.closers.append(publisher.close)

    intake.register(app, blueprint, publisher, store)
    directives.register(app, blueprint, publisher)
    consolidate.register(app, blueprint, store, blueprint.rulebook, publisher)
    rollup.register(app, blueprint, store, publisher)
    state_audit.register(app, blueprint, store)
    read_model = ReadModel(store, blueprint.catalogue, blueprint.rulebook)
    # directives from the API process; the reads too only if asked (readers never slow the writers)
    api.register(app, read_model, blueprint, publisher, reads=settings.worker_query_api)
    briefing.register(app, blueprint, read_model, publisher)
    ticker.register(app, blueprint, publisher)
    alert_bridge.register(app, blueprint, framing.resolve)  # only when STREAM_APP_ALERTMANAGER_URL is set
    ops = Operations(app, blueprint, redis_client)
    ops.install()
    _register_pages(app, ops)

    return app


def _register_pages(app: faust.App, ops: Operations) -> None:
    """The operator's HTTP pages: metrics, and probes for a load balancer or Kubernetes."""

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        # Kept as it was: "ready" here means "nothing waits for a dependency"; /readyz is the full check.
        waiting = sorted(retry.retrying())
        ready = not waiting
        return web.json({"live": True, "ready": ready, "waiting_for": waiting}, status=200 if ready else 503)

    @app.page("/livez")
    async def livez_page(web: Any, request: Any) -> Any:
        live, body = ops.liveness()
        return web.json(body, status=200 if live else 503)

    @app.page("/readyz")
    async def readyz_page(web: Any, request: Any) -> Any:
        ready, body = ops.readiness()
        return web.json(body, status=200 if ready else 503)
