"""Run a worker: load and check configuration, check services, then hand over to Faust."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

import faust
import mode.loop

from stream_app.config.blueprint import load_blueprint
from stream_app.exceptions import ConfigurationError
from stream_app.exit_codes import ExitCode
from stream_app.kafka.subjects import check_framing_settings, output_framing
from stream_app.logs import configure_logging, get_logger, logging_config
from stream_app.pipeline.app import create_app
from stream_app.pipeline.preflight import check_services
from stream_app.settings import Settings

log = get_logger(__name__)

FORCED_SHUTDOWN_EXIT = ExitCode.FORCED_STOP
"""The exit status of a stop the grace ended (``EX_TEMPFAIL``): not a clean stop, so a supervisor
(Kubernetes, systemd) sees and counts it, yet nothing to repair: the next owner redelivers and skips."""


def run_worker(settings: Settings) -> int:
    """Start a worker (Faust exits the process when it stops). A start-up that fails raises
    ConfigurationError or ServiceUnreachableError, which the CLI turns into one line and its exit code
    (:mod:`stream_app.exit_codes`: 78, 69)."""
    configure_logging(settings)
    try:
        check_framing_settings(settings)
        blueprint = load_blueprint(settings)
    except LookupError as exc:  # a role or a name the files lack: the files are to fix
        raise ConfigurationError(str(exc)) from None
    check_services(blueprint)
    # confluent: the ids, once; an unreachable registry is waited out (logged), the worker not ready
    framing = output_framing(blueprint, wait_out=True)
    # uvloop: a faster event loop under the same asyncio API (Faust's per-record path is loop-heavy)
    mode.loop.use("uvloop")
    app = create_app(settings, blueprint, framing)
    log.info(
        "worker_starting",
        app_id=settings.group_id,
        kafka=settings.kafka_bootstrap,
        topics=[t.name for t in blueprint.topics if t.role in {"input", "bulk_input", "repartition"}],
        output_framing=framing.name,
        web=f"http://{settings.web_host}:{settings.web_port}/metrics",
    )
    worker = Worker(
        app,
        grace_s=settings.shutdown_grace_s,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
    return 0


class Worker(faust.Worker):  # named Worker: its log lines read "[^Worker]: Ready" as Faust's do
    """Faust's worker with a bound on shutdown.

    Stopping can hang inside aiokafka: closing the consumer first waits for a group join in flight, which
    may take as long as the broker's rebalance. A signal arms a watchdog thread; if the worker has not
    exited ``grace_s`` later it logs which services were still stopping and exits. That loses nothing:
    every state commit is atomic with the offsets it applied, and Kafka redelivers the rest to the next
    owner, which skips what was already applied (the same path as a SIGKILL, which the chaos tests cover).
    The exit status says so: :data:`FORCED_SHUTDOWN_EXIT`, not 0."""

    def __init__(self, *services: Any, grace_s: float, **kwargs: Any) -> None:
        super().__init__(*services, **kwargs)
        self._grace_s = grace_s
        self._watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._grace_s, self._force_exit, args=(sig.name,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super()._schedule_shutdown(sig)

    async def _sentinel_task(self) -> None:
        """mode's last task before the loop closes sleeps a whole second (one turn of the loop is what it
        is for): every stop — a rolling restart, a rebalance storm — took a second longer than it needed."""
        await asyncio.sleep(0.05)

    def _on_sigusr2(self) -> None:
        """mode's worker starts pdb on SIGUSR2, on the event loop: a stray signal would stop the stream
        waiting on a terminal nobody has (a pod's stdin). Logged and ignored; SIGUSR1 still logs every
        task's stack (mode's "cry"), for a worker that looks stuck."""
        log.warning("signal_ignored", signal="SIGUSR2", hint="SIGUSR1 logs every task's stack")

    def _force_exit(self, signal_name: str) -> None:
        log.error(
            "shutdown_forced",
            signal=signal_name,
            grace_s=self._grace_s,
            # every service below may be stopped already, the worker itself still tearing down
            still_stopping=_still_stopping(self) or [str(getattr(self, "label", "Worker"))],
            hint="nothing is lost: uncommitted records are redelivered and applied once",
            exit_status=FORCED_SHUTDOWN_EXIT,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(FORCED_SHUTDOWN_EXIT)


def _still_stopping(service: Any, depth: int = 0) -> list[str]:
    """The services below ``service`` not yet stopped (depth-first, labels as Faust logs them)."""
    names: list[str] = []
    if depth > 8:
        return names
    for child in getattr(service, "_children", ()) or ():
        stopped = getattr(child, "_stopped", None)
        if stopped is not None and not stopped.is_set():
            names.append(str(getattr(child, "label", type(child).__name__)))
        names.extend(_still_stopping(child, depth + 1))
    return names
