"""``make demo``: topics, a worker, a simulated feed, and the center's outputs printed as they happen."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka import acl, quotas
from stream_app.kafka.topics import apply
from stream_app.logs import colour_allowed
from stream_app.paths import CHECKOUT, state_dir
from stream_app.settings import Settings
from stream_app.tools import launch, simulate, state, tail

# Where `deploy/local/services up` runs them (SERVICES_PROMETHEUS_PORT, SERVICES_ALERTMANAGER_PORT).
LOCAL_PROMETHEUS = "http://127.0.0.1:19090"
LOCAL_ALERTMANAGER = "http://127.0.0.1:19094"


def run_demo(settings: Settings, duration: float | None, rate: float, worker_env: str | None = None) -> int:
    """Run the whole pipeline locally; returns 0 once an alert and a consolidated event were seen.

    The demo itself (topics, ACLs, the simulated feed, the tail) acts as whoever ``settings`` say (the
    admin, from ``make demo``); the worker runs as the principal of ``worker_env`` (the app's).
    """
    blueprint = load_blueprint(settings)
    _prepare(settings, blueprint)

    log_dir = state_dir("demo")  # .local/demo in a checkout
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path: Path = log_dir / "worker.log"
    tokens = _demo_tokens(log_dir / "api-tokens.toml")
    # The demo worker forwards the center's alerts to the local Alertmanager, to be seen there too.
    alertmanager = settings.alertmanager_url or LOCAL_ALERTMANAGER
    env = {
        **os.environ,
        **_env_file(worker_env),
        "STREAM_APP_LOG_FORMAT": "json",
        "STREAM_APP_ALERTMANAGER_URL": alertmanager,
        "STREAM_APP_API_TOKENS_FILE": str(log_dir / "api-tokens.toml"),
    }
    worker = launch.start_worker(env, log_path, append=True)
    print(f"demo: worker pid {worker.pid}, log {log_path}", flush=True)
    screen = _start_screen(env, worker_env, log_dir / "screen.log")
    seen = {"alert": 0, "consolidated": 0, "dead_letter": 0, "error": 0}
    stop = threading.Event()
    try:
        web = f"http://{settings.web_host}:{settings.web_port}"
        try:
            worker.wait_healthy(f"{web}/health", 60)
        except launch.NotReadyError:
            print(f"demo: worker did not become ready; see {log_path}", file=sys.stderr)
            return 1
        print(
            f"demo: worker ready; metrics at {web}/metrics, probes at {web}/livez and {web}/readyz",
            flush=True,
        )
        api = f"http://{settings.screen_host}:{settings.screen_port}/api/v1"  # the screen's process
        print(
            f"demo: query API at {api}/ (token {tokens['viewer']} to read; {tokens['operator']} "
            f"to post directives), e.g. curl -H 'Authorization: Bearer {tokens['viewer']}' "
            f"{api}/alerts/active",
            flush=True,
        )
        print(
            f"demo: the center's screen at http://{settings.screen_host}:{settings.screen_port}/ "
            f"(sign in with {tokens['operator']} to act on alerts, {tokens['viewer']} to watch)",
            flush=True,
        )
        print(
            f"demo: Prometheus at {LOCAL_PROMETHEUS} (scrapes this worker, rules at /alerts), "
            f"Alertmanager at {alertmanager} (the center's alerts arrive there too)",
            flush=True,
        )
        repo = CHECKOUT or Path("<the stream-app repository>")  # not shipped in the wheel
        print(
            f"demo: Grafana dashboard to import: {repo / 'deploy' / 'grafana' / 'stream-app.json'}; "
            f"runbook: {repo / 'docs' / 'runbook.md'}",
            flush=True,
        )
        reporters = simulate.live_reporters(blueprint.catalogue)
        feeder = threading.Thread(
            target=simulate.run_live,
            args=(settings, blueprint.catalogue, blueprint.schemas),
            kwargs={"reporters": reporters, "rate": rate, "duration": duration},
            daemon=True,
        )
        feeder.start()
        print(
            f"demo: feeding {', '.join(blueprint.input_topic(r).name for r in reporters)} at {rate}/s"
            + (f" for {duration:.0f}s" if duration else " (Ctrl-C to stop)"),
            flush=True,
        )
        outputs = {
            blueprint.topic_by_role("alerts").name: "alert",
            blueprint.topic_by_role("consolidated").name: "consolidated",
            **{blueprint.dead_letter_topic(r).name: "dead_letter" for r in reporters},
        }
        started = time.monotonic()
        grace = 10.0  # let the last records through after the feed stops

        def on_record(subject: str, line: str) -> None:
            seen[subject] = seen.get(subject, 0) + 1
            print(line, flush=True)

        def done() -> bool:
            return stop.is_set() or (duration is not None and time.monotonic() - started > duration + grace)

        tail.follow(
            settings,
            blueprint.schemas,
            outputs,
            on_record,
            stop=done,
            from_beginning=False,
            colour=colour_allowed(sys.stdout),
        )
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
    finally:
        stop.set()
        screen.stop(10)
        worker.stop(30)
    print(
        f"demo: {seen['alert']} alerts, {seen['consolidated']} consolidated events, "
        f"{seen['dead_letter']} dead letters",
        flush=True,
    )
    return 0 if seen["alert"] and seen["consolidated"] else 1


def _start_screen(worker: dict[str, str], worker_env: str | None, log_path: Path) -> launch.Launched:
    """``stream-app screen`` as the center (its principal's file next to the worker's, when there is one:
    Kafka as ``center``, Redis as its read-only user), with the demo's tokens."""
    center = Path(worker_env).with_name("center.env") if worker_env else None
    env = {**worker, **(_env_file(str(center)) if center is not None and center.exists() else {})}
    argv = launch.command("screen")
    screen = launch.Launched(launch.spawn(argv, env, log_path, append=True), log_path, name="screen")
    print(f"demo: screen pid {screen.pid}, log {log_path}", flush=True)
    return screen


def _prepare(settings: Settings, blueprint: Blueprint) -> None:
    """The topics, the ACLs (on a secured broker) and a sound state, before the worker starts."""
    changes = apply(settings, blueprint.topics)
    print(f"demo: topics ready ({len(changes)} changed)", flush=True)
    if settings.kafka_security_protocol.startswith("SASL"):
        granted = acl.apply(blueprint)
        print(f"demo: ACLs ready ({len(granted.create)} granted, {len(granted.delete)} revoked)", flush=True)
        limited = quotas.apply(blueprint)
        print(f"demo: reporter quotas ready ({len(limited.to_set)} set)", flush=True)
    _sound_state(blueprint)


def _sound_state(blueprint: Blueprint) -> None:
    """A Redis that forgot while Kafka kept the log (an earlier demo's, without persistence then): the
    worker would rightly refuse to apply on it; for a demo, the state is rebuilt from the log first."""
    lost = [row for row in state.status(blueprint) if row.problem is not None]
    if not lost:
        return
    print(
        f"demo: the state is behind the log on {len(lost)} partition(s): rebuilding it from the log "
        "first (stream-app state rebuild)",
        flush=True,
    )
    report = state.rebuild(blueprint, progress=True)
    print(f"demo: state rebuilt from {report.records:,} records ({report.rate:,.0f}/s)", flush=True)


def _env_file(path: str | None) -> dict[str, str]:
    """KEY=VALUE lines (a principal's settings, as deploy/local/services writes them)."""
    if path is None:
        return {}
    env = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            env[key.strip()] = value
    return env


def _demo_tokens(path: Path) -> dict[str, str]:
    """A viewer's and an operator's API token for the demo, made afresh each run."""
    path.unlink(missing_ok=True)
    return {role: create_token(path, f"demo-{role}", role) for role in ("viewer", "operator")}
