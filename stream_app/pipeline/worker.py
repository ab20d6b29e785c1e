"""Run a worker: load and check configuration, check services, then hand over to Faust."""

from __future__ import annotations

import sys

import faust
import mode.loop

from stream_app.config.blueprint import load_blueprint
from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.kafka.subjects import output_framing
from stream_app.logs import configure_logging, get_logger, logging_config
from stream_app.pipeline.app import create_app
from stream_app.pipeline.preflight import check_services
from stream_app.settings import Settings

log = get_logger(__name__)


def run_worker(settings: Settings) -> int:
    """Start a worker; returns an exit code when start-up fails (Faust exits the process otherwise)."""
    configure_logging(settings)
    try:
        blueprint = load_blueprint(settings)
        check_services(blueprint)
        framing = output_framing(blueprint)  # confluent: waits for the schema registry, like Redis
    except (ConfigurationError, LookupError, ServiceUnreachableError) as exc:
        print(f"stream-app worker: {exc}", file=sys.stderr)
        return 2
    # uvloop: a faster event loop under the same asyncio API (Faust's per-record path is loop-heavy)
    mode.loop.use("uvloop")
    app = create_app(settings, blueprint, framing)
    log.info(
        "worker_starting",
        app_id=settings.group_id,
        kafka=settings.kafka_bootstrap,
        topics=[t.name for t in blueprint.topics if t.role in {"input", "repartition"}],
        output_framing=framing.name,
        web=f"http://{settings.web_host}:{settings.web_port}/metrics",
    )
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
    return 0
