"""End-to-end benchmark of the worker on the real local services, side by side with the floor, a
naive Faust agent and a Quix Streams peer, measured in one run on the same machine.

    .venv/bin/python -m bench.run                 # full size (make bench)
    .venv/bin/python -m bench.run --scale 0.1     # a tenth of every size
    .venv/bin/python -m bench.run --smoke         # tiny sizes, under a minute (make bench-smoke)

Scenarios, each in its own throwaway namespace (topics ``bench.<uuid>.``, Redis keys
``bench-<uuid>``), deleted at the end:

1. drain — N observations of the simulator's live mix pre-produced across the reporters' topics,
   then one worker; observations/s from the first record consumed until every input record is
   consumed and every accepted observation's outputs are published and its state committed (the
   worker's own counters: input consumed = N and end-to-end observations = accepted). The worker is
   sampled by py-spy meanwhile, and its peak RSS and the run's Redis memory are taken after.
2. side by side on the same input topics: the floor (confluent-kafka consume + decode), naive
   Faust (per-record awaits) and the Quix Streams peer (``bench/peers``), records/s and ratio to
   the floor;
3. scale-out — the drain with two workers in one consumer group;
4. latency — a steady offered load (2,000/s and the sustainable 1,000/s); produce → consolidated
   consumed and → alert consumed, the worker's per-hop breakdown (``bench.latency``), then the
   Quix Streams peer alone under the same load and records: produce → its output consumed;
5. backfill — ``stream-app simulate --history`` + ``stream-app produce`` of daily history since
   2010, then its drain by one worker;
6. readers — the pipeline's latency at 300 observations/s with no readers and with 20 pages, 50
   requests/s of theirs and 8 API clients (76 requests/s) on the query API's process
   (``stream-app screen``: readers never reach the worker), in balanced phases on one worker;
7. soak — one worker under the live mix at a steady 300/s for 60 s (tick every 30 s): its CPU
   share, CPU per record against the drain's, RSS and produce → consolidated.

Writes ``.local/bench/results.json``, ``.local/bench/results.png`` and the worker logs and
profiles under ``.local/bench/<run>/``; prints a table. Loopback services only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypedDict

from aiokafka.codec import has_lz4
from confluent_kafka import Producer

from bench import report
from bench.common import (
    REPO_ROOT,
    BenchError,
    Namespace,
    Process,
    check_loopback,
    free_port,
    high_watermarks,
    redis_prefix_memory,
    redis_traffic,
    redis_used_memory,
    start_worker,
    summed,
)
from bench.latency import HOPS, OutputReader, PeerReader, Tracker, percentiles, send_steadily
from bench.profiling import Recording, summarise
from bench.workload import (
    HISTORY_FROM,
    HISTORY_TO,
    Mix,
    generate_mix,
    peer_spec,
    produce_history,
    produce_mix,
    write_history,
)
from stream_app.api.auth import create_token
from stream_app.config.blueprint import Blueprint, load_blueprint
from stream_app.kafka.config import confluent_config, security_env
from stream_app.settings import Settings
from stream_app.tools.launch import READY_LINE
from stream_app.wire import codecs

OUT_DIR = REPO_ROOT / ".local" / "bench"
QUIX_PYTHON = OUT_DIR / "quix-venv" / "bin" / "python"


class SizeSpec(TypedDict):
    """The run's sizes as written here: ``Sizes``' fields."""

    drain: int
    peer_records: int
    latency_rate: float
    latency_seconds: float
    history_days: int


FULL: SizeSpec = {
    "drain": 500_000,
    "peer_records": 100_000,  # naive Faust and Quix are slow: they process the first part of the input
    "latency_rate": 2_000.0,
    "latency_seconds": 60.0,
    "history_days": (date.fromisoformat(HISTORY_TO) - date.fromisoformat(HISTORY_FROM)).days + 1,
}
SMOKE: SizeSpec = {
    "drain": 3_000,
    "peer_records": 1_500,
    "latency_rate": 300.0,
    "latency_seconds": 4.0,
    "history_days": 5,
}
SCENARIOS = ("drain", "peers", "scale_out", "latency", "backfill", "readers", "soak")
SOAK_RATE, SOAK_SECONDS, SMOKE_SOAK_SECONDS = 300.0, 60.0, 5.0


@dataclass(frozen=True)
class Sizes:
    drain: int
    peer_records: int
    latency_rate: float
    latency_seconds: float
    history_days: int

    @property
    def history_span(self) -> str:
        end = date.fromisoformat(HISTORY_TO)
        return f"{(end - timedelta(days=self.history_days - 1)).isoformat()}:{end.isoformat()}"


def sizes_for(scale: float, smoke: bool) -> Sizes:
    """Every size scaled (the latency rate is not: it is the target's offered load)."""
    if smoke:
        return Sizes(**SMOKE)
    return Sizes(
        drain=max(1000, round(FULL["drain"] * scale)),
        peer_records=max(500, min(round(FULL["peer_records"] * scale), round(FULL["drain"] * scale))),
        latency_rate=float(FULL["latency_rate"]),
        latency_seconds=max(5.0, float(FULL["latency_seconds"]) * min(1.0, scale * 2)),
        history_days=max(3, round(int(FULL["history_days"]) * scale)),
    )


# --- measuring a drain ---------------------------------------------------------------------------


@dataclass
class Drain:
    """How a drain went."""

    records: int
    seconds: float  # first record consumed -> done
    wall_seconds: float  # worker(s) started -> done (start-up and group join included)
    accepted: int
    rejected: int
    produced: dict[str, float]
    cpu_seconds: float
    peak_rss_bytes: list[int | None]
    cpu_seconds_from_first: float  # from the first record consumed: no start-up (the soak's comparison)
    stage_busy_seconds: dict[str, float]  # per stage: time spent on batches (stream_app_stage_batch_seconds)
    stage_batches: dict[str, dict[str, float]]  # per stage: batches, records and ms per batch (1 worker)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan


def wait_drained(
    ns: Namespace,
    workers: list[Process],
    expected: int,
    timeout: float,
    on_first: Callable[[], None] | None = None,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> Drain:
    """Poll the workers' /metrics until all ``expected`` input records are consumed and every
    accepted observation went through the stateful step (outputs published, state committed).
    ``on_first`` is called when the first record has been consumed (to start a profiler)."""
    inputs = list(ns.input_topics())
    started = time.perf_counter()
    cpu0 = cpu_first = [w.cpu_seconds() for w in workers]
    first: float | None = None
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        for worker in workers:
            worker.check_alive()
        samples = [w.metrics() for w in workers]
        now = time.perf_counter()
        consumed = summed(samples, "stream_app_records_consumed_total", inputs)
        accepted = summed(samples, "stream_app_records_accepted_total")
        finished = summed(samples, "stream_app_end_to_end_latency_seconds_count")
        if first is None and consumed > 0:
            first = now
            cpu_first = [w.cpu_seconds() for w in workers]
            if on_first is not None:
                on_first()
        if consumed >= expected and finished >= accepted:
            break
        if on_progress is not None:
            on_progress(consumed / expected)
        if time.monotonic() > deadline:
            raise BenchError(
                f"not drained after {timeout:.0f} s: {consumed:.0f}/{expected} consumed, "
                f"{finished:.0f}/{accepted:.0f} observations through the stateful step"
            )
        if now - last_report > 10:
            print(
                f"    ... {consumed:,.0f}/{expected:,} consumed, "
                f"{finished:,.0f}/{accepted:,.0f} through the stateful step",
                flush=True,
            )
            last_report = now
        # /metrics costs the worker CPU: ask twice a second, ten times a second near the end
        time.sleep(0.1 if consumed >= 0.97 * expected else 0.5)
    done = time.perf_counter()
    return Drain(
        records=expected,
        seconds=done - (first or started),
        wall_seconds=done - started,
        accepted=int(accepted),
        rejected=int(summed(samples, "stream_app_records_rejected_total")),
        produced=_produced(ns, samples),
        cpu_seconds=sum(w.cpu_seconds() - c for w, c in zip(workers, cpu0, strict=True)),
        peak_rss_bytes=[w.peak_rss_bytes() for w in workers],
        stage_busy_seconds=_stage_busy(samples),
        stage_batches=_stage_batches(samples[0]) if len(samples) == 1 else {},
        cpu_seconds_from_first=sum(w.cpu_seconds() - c for w, c in zip(workers, cpu_first, strict=True)),
    )


def _stage_busy(samples: list[dict[str, float]]) -> dict[str, float]:
    busy: dict[str, float] = {}
    for sample in samples:
        for key, value in sample.items():
            if key.startswith("stream_app_stage_batch_seconds_sum{"):
                stage = key.split('stage="', 1)[1].split('"', 1)[0]
                busy[stage] = busy.get(stage, 0.0) + value
    return busy


def _produced(ns: Namespace, samples: list[dict[str, float]]) -> dict[str, float]:
    """Records the workers published, by topic (namespace left out)."""
    produced: dict[str, float] = {}
    for key in {k for s in samples for k in s if k.startswith("stream_app_records_produced_total")}:
        topic = key.split('topic="', 1)[1].rstrip('"}').removeprefix(ns.settings.topic_namespace)
        produced[topic] = sum(s.get(key, 0.0) for s in samples)
    return produced


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    base: Settings
    sizes: Sizes
    run_dir: Path
    results: dict[str, Any]
    worker_env: dict[str, str]

    def log(self, text: str) -> None:
        print(text, flush=True)

    @contextlib.contextmanager
    def namespace(self, label: str) -> Iterator[Namespace]:
        ns = Namespace.create(self.base, label)
        try:
            yield ns
        finally:
            if not self.args.keep:
                ns.delete()

    def timeout(self, records: int, rate_floor: float = 500.0) -> float:
        return 120.0 + records / rate_floor


def scenario_drain(run: Run, mix: Mix) -> None:
    """One worker drains the pre-produced mix, profiled."""
    with run.namespace("drain") as ns:
        seconds = produce_mix(ns, mix.items)
        run.results["pre_produce"] = {"records": len(mix.items), "seconds": seconds}
        run.log(f"  pre-produced {len(mix.items):,} in {seconds:.1f} s ({len(mix.items) / seconds:,.0f}/s)")
        _worker_drain(run, ns, mix)


def scenario_side_by_side(run: Run, mix: Mix) -> None:
    """The floor, naive Faust and Quix each read all of the same input: the first ``peer_records``
    records of the mix (the mix is uniform over time), pre-produced once into their namespace."""
    items = mix.items[: min(run.sizes.peer_records, len(mix.items))]
    with run.namespace("peers") as ns:
        produce_mix(ns, items)
        scenario_peers(run, ns, Mix(items=items, by_reporter=Counter(i.reporter for i in items)))


def _worker_drain(run: Run, ns: Namespace, mix: Mix) -> None:
    """One worker drains the namespace's input, profiled by py-spy from its first record."""
    used_before = redis_used_memory(ns.settings)
    worker = start_worker(ns, 1, run.run_dir / "drain", run.worker_env)
    recordings: list[Recording] = []

    def profile() -> None:
        started = Recording.start(worker.pid, run.run_dir / "drain" / "worker-1.pyspy.txt")
        if started is not None:
            recordings.append(started)

    try:
        drain = wait_drained(
            ns,
            [worker],
            len(mix.items),
            run.timeout(len(mix.items)),
            profile if run.args.profile else None,
        )
        stacks = recordings[0].stop() if recordings else None
        keys, prefix_bytes = redis_prefix_memory(ns.settings, ns.prefix)
        used_after = redis_used_memory(ns.settings)
    finally:
        for recording in recordings:
            recording.stop()
        worker.stop()
    run.results["drain"] = {
        **_drain_json(drain),
        "redis": {
            "keys": keys,
            "bytes_of_keys": prefix_bytes,
            "used_memory_after": used_after,
            "used_memory_growth": used_after - used_before,
        },
    }
    run.log(f"  worker: {drain.records:,} in {drain.seconds:.1f} s = {drain.rate:,.0f}/s")
    busy = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(drain.stage_busy_seconds.items()))
    run.log(f"  stages busy (time on batches): {busy}")
    if stacks is not None:
        run.results["profile"] = summarise(stacks, drain.cpu_seconds, drain.records)


def scenario_peers(run: Run, ns: Namespace, mix: Mix) -> None:
    spec_path = run.run_dir / "peer-spec.json"
    spec = peer_spec(ns.blueprint)
    # Subscribe to the topics that have records: a peer starting a state store per idle topic
    # (Quix creates a changelog topic for each, one after the other) only slows its start.
    spec["subscribe"] = sorted(ns.blueprint.input_topic(r).name for r in mix.by_reporter)
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    peers: dict[str, Any] = {}
    run.results["peers"] = peers
    limit = len(mix.items)
    floor = _run_floor(run, ns, spec_path, limit)
    peers["floor"] = floor
    run.log(f"  floor: {floor['records']:,} in {floor['seconds']:.2f} s = {floor['rate']:,.0f}/s")
    for name, launcher in (("naive_faust", _naive_faust_argv), ("quix", _quix_argv)):
        argv = launcher(run, ns, spec_path, name)
        if argv is None:
            peers[name] = {"skipped": "Quix Streams virtualenv missing (make bench installs it)"}
            run.log(f"  {name}: skipped")
            continue
        began = time.perf_counter()
        try:
            peers[name] = _run_peer(run, ns, name, argv, limit)
        except BenchError as exc:
            peers[name] = {"failed": str(exc)[-1500:]}
            run.log(f"  {name}: FAILED {str(exc)[:300]}")
            continue
        run.log(
            f"  {name}: {limit:,} in {peers[name]['seconds']:.1f} s = {peers[name]['rate']:,.0f}/s "
            f"({time.perf_counter() - began:.0f} s with start and stop)"
        )


def _run_floor(run: Run, ns: Namespace, spec_path: Path, limit: int) -> dict[str, Any]:
    import subprocess  # noqa: PLC0415 - only here

    argv = [sys.executable, "-m", "bench.peers.floor", "--spec", str(spec_path)]
    argv += [
        "--bootstrap",
        ns.settings.kafka_bootstrap,
        "--kafka-config",
        json.dumps(_peer_kafka_config(ns)),
        "--group",
        f"{ns.settings.topic_namespace}peer-floor",
    ]
    argv += ["--limit", str(limit)]
    done = subprocess.run(  # noqa: S603 - argv built here
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=run.timeout(limit), check=False
    )
    if done.returncode != 0:
        raise BenchError(f"floor failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["rate"] = result["records"] / result["seconds"] if result["seconds"] > 0 else math.nan
    return result


def _peer_kafka_config(ns: Namespace) -> dict[str, Any]:
    """The librdkafka security properties a confluent-based peer connects with (the harness's own)."""
    return {k: v for k, v in confluent_config(ns.settings).items() if k != "bootstrap.servers"}


def _peer_topics(ns: Namespace, name: str) -> tuple[str, str, str]:
    base = f"{ns.settings.topic_namespace}peer.{name}"
    return f"{base}.out", f"{base}.dlq", f"{base}.alerts"


def _naive_faust_argv(run: Run, ns: Namespace, spec_path: Path, name: str) -> list[str] | None:
    out, dlq, alerts = _peer_topics(ns, name)
    data = run.run_dir / "peers" / f"{name}-data"
    data.mkdir(parents=True, exist_ok=True)
    return [
        *(sys.executable, "-m", "bench.peers.naive_faust", "--spec", str(spec_path)),
        *(
            "--bootstrap",
            ns.settings.kafka_bootstrap,
            "--group",
            f"{ns.settings.topic_namespace}peer-naive-faust",
        ),
        *("--redis-url", ns.settings.redis_url.get_secret_value(), "--prefix", f"{ns.prefix}:peer-naive"),
        *("--out", out, "--dlq", dlq, "--alerts", alerts, "--datadir", str(data)),
    ]


def _quix_argv(run: Run, ns: Namespace, spec_path: Path, name: str) -> list[str] | None:
    if not QUIX_PYTHON.exists():
        return None
    out, dlq, alerts = _peer_topics(ns, name)
    state = run.run_dir / "peers" / f"{name}-state"
    state.mkdir(parents=True, exist_ok=True)
    return [
        *(str(QUIX_PYTHON), "-m", "bench.peers.quix_peer", "--spec", str(spec_path)),
        *("--bootstrap", ns.settings.kafka_bootstrap, "--group", f"{ns.settings.topic_namespace}peer-quix"),
        *("--kafka-config", json.dumps(_peer_kafka_config(ns))),
        *("--redis-url", ns.settings.redis_url.get_secret_value(), "--prefix", f"{ns.prefix}:peer-quix"),
        *("--out", out, "--dlq", dlq, "--alerts", alerts, "--state-dir", str(state)),
    ]


def _run_peer(run: Run, ns: Namespace, name: str, argv: list[str], limit: int) -> dict[str, Any]:
    """Start a peer, time it from its first output to ``limit`` outputs (records out + dead letters
    on Kafka), then stop it."""
    out, dlq, alerts = _peer_topics(ns, name)
    ns.add_topics([out, dlq, alerts])
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
    env.update(security_env(ns.settings))  # the naive Faust peer builds its credentials from these
    env["PYTHONPATH"] = str(REPO_ROOT)
    peer = Process.start(name, argv, env, run.run_dir / "peers", cwd=REPO_ROOT)
    started = time.perf_counter()
    first: float | None = None
    deadline = time.monotonic() + run.timeout(limit, rate_floor=200.0)
    cpu0 = peer.cpu_seconds()
    try:
        while True:
            peer.check_alive()
            marks = high_watermarks(ns.settings, [out, dlq])
            count = marks[out] + marks[dlq]
            now = time.perf_counter()
            if first is None and count > 0:
                first = now
            if count >= limit:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: {count}/{limit} outputs after the deadline:\n{peer.log_tail()}")
            time.sleep(0.1)
        cpu = peer.cpu_seconds() - cpu0
        rss = peer.peak_rss_bytes()
    finally:
        stopping = time.perf_counter()
        peer.stop()
        run.log(
            f"    {name}: first output {(first or now) - started:.1f} s after start, "
            f"stopped in {time.perf_counter() - stopping:.1f} s"
        )
    seconds = now - (first or started)
    alerts_count = high_watermarks(ns.settings, [alerts])[alerts]
    return {
        "records": limit,
        "seconds": seconds,
        "rate": limit / seconds if seconds > 0 else math.nan,
        "wall_seconds": now - started,
        "cpu_seconds": cpu,
        "peak_rss_bytes": rss,
        "outputs": int(marks[out]),
        "dead_letters": int(marks[dlq]),
        "alerts": int(alerts_count),
    }


def scenario_scale_out(run: Run, mix: Mix) -> None:
    with run.namespace("scale") as ns:
        produce_mix(ns, mix.items)
        workers = [start_worker(ns, i, run.run_dir / "scale-out", run.worker_env) for i in (1, 2)]
        try:
            drain = wait_drained(ns, workers, len(mix.items), run.timeout(len(mix.items)))
        finally:
            for worker in workers:
                worker.stop()
        run.results["scale_out"] = _drain_json(drain)
        run.log(f"  2 workers: {drain.records:,} in {drain.seconds:.1f} s = {drain.rate:,.0f}/s")


def _warm(ns: Namespace, worker: Process) -> None:
    """A few hundred records of the mix, drained: start-up and group join are not measured."""
    warm = generate_mix(ns.blueprint, 300, seed=11)
    produce_mix(ns, warm.items)
    wait_drained(ns, [worker], len(warm.items), 120)


def _steady_load(
    ns: Namespace,
    worker: Process,
    reader: OutputReader,
    thread: threading.Thread,
    *,
    count: int,
    rate: float,
    seed: int,
    on_start: Callable[[], None] | None = None,
) -> tuple[dict[str, float], int, float, float]:
    """Once the worker is ready and warmed up, ``count`` records of the mix sent at ``rate`` (event times
    on schedule, a lead for generating them) while ``reader`` follows the outputs in ``thread``; what
    the sender did, how many records it had, and the worker's CPU seconds and the clock when sending
    started. ``on_start`` is called just before (a profiler of the steady window)."""
    worker.wait_for_line(READY_LINE)
    _warm(ns, worker)
    lead = 3.0 + count * 60e-6
    items = generate_mix(
        ns.blueprint, count, seed=seed, first_s=time.time() + lead, step_s=1 / rate, keep_meta=True
    ).items
    thread.start()
    reader.ready.wait(15)
    if on_start is not None:
        on_start()
    cpu0, wall0 = worker.cpu_seconds(), time.perf_counter()
    return send_steadily(ns, items, rate, reader.tracker), len(items), cpu0, wall0


def scenario_latency(run: Run, rate: float, seconds: float, key: str = "latency") -> None:
    """Steady offered load of ``rate`` observations/s for ``seconds``; results under ``key``."""
    count = round(rate * seconds)
    with run.namespace("latency") as ns:
        worker = start_worker(ns, 1, run.run_dir / "latency", run.worker_env)
        tracker = Tracker()
        reader = OutputReader(ns, tracker, internal=True)
        thread = threading.Thread(target=reader.run, name="bench-output-reader", daemon=True)
        try:
            sending, _, cpu0, wall0 = _steady_load(
                ns, worker, reader, thread, count=count, rate=rate, seed=13
            )
            # An overloaded worker works through its backlog after the sending stops; wait for it,
            # within bounds (what is still unmatched then counts as infinitely late).
            deadline = time.monotonic() + min(300.0, 30.0 + count / 2000)
            while tracker.unmatched() and time.monotonic() < deadline and worker.alive():
                time.sleep(0.2)
            time.sleep(0.5)
            busy = (worker.cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
            rss = worker.peak_rss_bytes()
            sample = worker.metrics()
            produced = _produced(ns, [sample])
        finally:
            reader.stop.set()
            if thread.is_alive():
                thread.join(15)
            worker.stop()
        run.results[key] = {
            "rate_offered": rate,
            "seconds": seconds,
            "sender": sending,
            "observations_measured": tracker.measured,
            "unmatched": tracker.unmatched(),
            "decode_errors": tracker.errors,
            "to_consolidated_ms": percentiles(tracker.to_consolidated, tracker.unmatched()),
            "to_alert_ms": percentiles(tracker.to_alert),
            # per observation matched through the internal topic; see bench.latency's docstring
            "hops_ms": {hop: percentiles(tracker.hops.get(hop, [])) for hop in HOPS},
            "worker_cpu_share": busy,
            "stages": _stage_batches(sample),  # warm-up included
            "produced_by_topic": produced,  # warm-up included
            "worker_peak_rss_bytes": rss,
        }
        c = run.results[key]["to_consolidated_ms"]
        run.log(
            f"  latency at {sending['rate_achieved']:,.0f}/s: p50 {c['p50']:.0f} p95 {c['p95']:.0f} "
            f"p99 {c['p99']:.0f} ms ({tracker.unmatched()} unmatched)"
        )
        for stage, figures in sorted(run.results[key]["stages"].items()):
            run.log(
                f"    {stage}: {figures['batches']:,.0f} batches, "
                f"mean {figures['mean_records']:,.0f} records "
                f"in {figures['mean_ms']:,.1f} ms"
            )
        hops = run.results[key]["hops_ms"]
        run.log(
            "    hops p50/p99 ms: "
            + ", ".join(f"{h} {hops[h]['p50']:.0f}/{hops[h]['p99']:.0f}" for h in HOPS)
            + f" ({hops['intake']['count']:.0f} observations)"
        )


def scenario_peer_latency(run: Run, rate: float, seconds: float, key: str) -> None:
    """The Quix Streams peer under the same steady offered load as :func:`scenario_latency` (the
    same generated records), alone on the machine: produce call -> its output read, and -> its
    alert read (the peer alerts when an entity crosses its bound). Results under ``key``."""
    count = round(rate * seconds)
    with run.namespace("peerlat") as ns:
        warm = generate_mix(ns.blueprint, 300, seed=11)
        # event times do not matter to the peer: the records are generated before it starts
        items = generate_mix(ns.blueprint, count, seed=13, step_s=1 / rate, keep_meta=True).items
        spec_path = run.run_dir / f"{key}-spec.json"
        spec = peer_spec(ns.blueprint)
        spec["subscribe"] = sorted({ns.blueprint.input_topic(i.reporter).name for i in (*warm.items, *items)})
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        argv = _quix_argv(run, ns, spec_path, "quix")
        if argv is None:
            run.results[key] = {"skipped": "Quix Streams virtualenv missing (make bench installs it)"}
            run.log("  skipped: no Quix Streams virtualenv")
            return
        out, dlq, alerts = _peer_topics(ns, "quix")
        ns.add_topics([out, dlq, alerts])
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        log_dir = run.run_dir / key
        log_dir.mkdir(parents=True, exist_ok=True)
        peer = Process.start("quix", argv, env, log_dir, cwd=REPO_ROOT)
        tracker = Tracker()
        reader = PeerReader(ns.settings, (out, alerts), tracker)
        thread = threading.Thread(target=reader.run, name="bench-peer-reader", daemon=True)
        try:
            # Warm-up: its state stores and changelogs made, its group joined, a few hundred records.
            _peer_warm_up(ns, peer, warm, [out, dlq])
            thread.start()
            reader.ready.wait(15)
            cpu0, wall0 = peer.cpu_seconds(), time.perf_counter()
            sending = send_steadily(ns, items, rate, tracker)
            deadline = time.monotonic() + min(300.0, 30.0 + count / 2000)
            while len(tracker.to_output) < tracker.measured and time.monotonic() < deadline and peer.alive():
                time.sleep(0.2)
            time.sleep(0.5)
            busy = (peer.cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
            rss = peer.peak_rss_bytes()
        finally:
            reader.stop.set()
            if thread.is_alive():
                thread.join(15)
            peer.stop()
        missing = tracker.measured - len(tracker.to_output)
        run.results[key] = {
            "peer": "quix",
            "rate_offered": rate,
            "seconds": seconds,
            "sender": sending,
            "observations_measured": tracker.measured,
            "unmatched": missing,
            "decode_errors": tracker.errors,
            "to_output_ms": percentiles(tracker.to_output, missing),
            "to_alert_ms": percentiles(tracker.to_alert),
            "peer_cpu_share": busy,
            "peer_peak_rss_bytes": rss,
        }
        o, a = run.results[key]["to_output_ms"], run.results[key]["to_alert_ms"]
        run.log(
            f"  Quix peer at {sending['rate_achieved']:,.0f}/s: -> output p50/p95/p99 "
            f"{o['p50']:.0f}/{o['p95']:.0f}/{o['p99']:.0f} ms ({missing} unmatched); -> alert p99 "
            f"{a['p99']:.0f} ms ({a['count']:.0f}); {busy:.0%} of a core"
        )


def _peer_warm_up(ns: Namespace, peer: Process, warm: Mix, outputs: list[str]) -> None:
    """Until the peer has put out the warm-up records (its outputs and dead letters)."""
    produce_mix(ns, warm.items)
    deadline = time.monotonic() + 240.0
    while sum(high_watermarks(ns.settings, outputs).values()) < len(warm.items):
        peer.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"the Quix peer did not take its warm-up:\n{peer.log_tail()}")
        time.sleep(0.2)


SOAK_TICK_S = "30"  # the simulator's live mix with the production tick


def _thread_cpu(sample: dict[str, float]) -> dict[str, float]:
    """``stream_app_thread_cpu_seconds_total`` of a worker's /metrics sample, by thread."""
    prefix = 'stream_app_thread_cpu_seconds_total{thread="'
    return {key[len(prefix) : -2]: value for key, value in sample.items() if key.startswith(prefix)}


def _idle_cpu(worker: Process) -> tuple[float, dict[str, float]]:
    """The worker with nothing to do (its timers, fetches, probes), what a steady load pays anyway: its
    share of a core over ``SOAK_IDLE_S``, in all and by thread."""
    time.sleep(SOAK_IDLE_SETTLE_S)
    threads0 = _thread_cpu(worker.metrics())
    cpu0, wall0 = worker.cpu_seconds(), time.perf_counter()
    time.sleep(SOAK_IDLE_S)
    cpu, wall = worker.cpu_seconds() - cpu0, time.perf_counter() - wall0
    threads = {
        name: (value - threads0.get(name, 0.0)) / wall
        for name, value in _thread_cpu(worker.metrics()).items()
        if value - threads0.get(name, 0.0) > 0
    }
    return cpu / wall, dict(sorted(threads.items(), key=lambda kv: -kv[1]))


def scenario_soak(run: Run, rate: float, seconds: float) -> None:
    """One worker under the live mix at a steady ``rate`` for ``seconds`` (tick every 30 s): its CPU
    share and CPU per record over the steady window (/proc utime + stime), its RSS and produce ->
    consolidated latency; compared with the drain's CPU per record of the same run, if it ran."""
    count = round(rate * seconds)
    with run.namespace("soak") as ns:
        env = {"STREAM_APP_TICK_INTERVAL_S": SOAK_TICK_S, **run.worker_env}
        worker = start_worker(ns, 1, run.run_dir / "soak", env)
        idle_share, idle_threads = _idle_cpu(worker)
        tracker = Tracker()
        reader = OutputReader(ns, tracker)
        thread = threading.Thread(target=reader.run, name="bench-output-reader", daemon=True)
        recordings: list[Recording] = []

        traffic: list[tuple[int, int]] = []
        threads: list[dict[str, float]] = []

        def profile() -> None:
            traffic.append(redis_traffic(ns.settings))
            threads.append(_thread_cpu(worker.metrics()))
            if not run.args.profile:
                return
            started = Recording.start(worker.pid, run.run_dir / "soak" / "worker-1.pyspy.txt")
            if started is not None:
                recordings.append(started)

        try:
            sending, records, cpu0, wall0 = _steady_load(
                ns,
                worker,
                reader,
                thread,
                count=count,
                rate=rate,
                seed=17,
                on_start=profile,
            )
            cpu, wall = worker.cpu_seconds() - cpu0, time.perf_counter() - wall0
            by_thread = _thread_cpu(worker.metrics())
            commands, sent = (a - b for a, b in zip(redis_traffic(ns.settings), traffic[0], strict=True))
            stacks = recordings[0].stop() if recordings else None
            deadline = time.monotonic() + 60.0
            while tracker.unmatched() and time.monotonic() < deadline and worker.alive():
                time.sleep(0.2)
            rss = worker.rss_bytes()
            peak = worker.peak_rss_bytes()
            sample = worker.metrics()
            stages = _stage_batches(sample)  # warm-up included
            owned = {
                key.split("{", 1)[1].rstrip("}"): value
                for key, value in sample.items()
                if key.startswith("stream_app_owned_state_lookups_total{")
            }
        finally:
            for recording in recordings:
                recording.stop()
            reader.stop.set()
            if thread.is_alive():
                thread.join(15)
            worker.stop()
    drain = run.results.get("drain")
    # the drain's CPU from its first record (the worker's start-up left out, as the soak leaves it out)
    drain_us = 1e6 * drain["cpu_seconds_from_first_record"] / drain["records"] if drain else None
    us = 1e6 * cpu / records
    run.results["soak"] = {
        "rate_offered": rate,
        "seconds": seconds,
        "tick_interval_s": float(env["STREAM_APP_TICK_INTERVAL_S"]),
        "sender": sending,
        "records": records,
        "cpu_seconds": cpu,
        "worker_cpu_share": cpu / wall,
        "cpu_us_per_record": us,
        "drain_cpu_us_per_record": drain_us,
        "ratio_to_drain": us / drain_us if drain_us else None,
        # the idle worker's share of a core, and what it adds to each record at the soak's rate
        "idle_cpu_share": idle_share,
        "idle_us_per_record": 1e6 * idle_share / rate,
        "idle_thread_cpu_share": idle_threads,
        "worker_rss_bytes": rss,
        "worker_peak_rss_bytes": peak,
        "unmatched": tracker.unmatched(),
        "to_consolidated_ms": percentiles(tracker.to_consolidated, tracker.unmatched()),
        "stages": stages,
        "redis_commands_per_record": commands / records,
        "redis_bytes_sent_per_record": sent / records,
        "owned_state_lookups": owned,  # warm-up included
        # each thread's share of a core over the steady window (the event loop of the agents: MainThread)
        "thread_cpu_share": {
            name: (seconds - threads[0].get(name, 0.0)) / wall
            for name, seconds in sorted(by_thread.items(), key=lambda kv: -kv[1])
            if seconds - threads[0].get(name, 0.0) > 0
        }
        if threads
        else {},
    }
    if stacks is not None:
        run.results["soak"]["profile"] = summarise(stacks, cpu, records)
    c = run.results["soak"]["to_consolidated_ms"]
    versus = f", drain {drain_us:,.0f} µs = {us / drain_us:.1f}×" if drain_us else " (no drain in this run)"
    run.log(
        f"  soak at {sending['rate_achieved']:,.0f}/s for {seconds:.0f} s: {cpu / wall:.0%} of a core, "
        f"{us:,.0f} µs CPU per record{versus}; RSS {(rss or 0) / 2**20:.0f} MB; "
        f"->consolidated p50/p99 {c['p50']:.0f}/{c['p99']:.0f} ms; Redis {commands / records:.1f} commands, "
        f"{sent / records / 1024:.1f} KiB sent per record; idle {idle_share:.1%} of a core"
        f" ({1e6 * idle_share / rate:,.0f} µs of each record's)"
    )


SOAK_IDLE_SETTLE_S = 3.0  # after the worker is ready, before its idle CPU is measured
SOAK_IDLE_S = 10.0  # the idle window


READERS_RATE = 300.0  # observations/s: the screen issue's measurement
# The API's own clients: what, asked of a worker's event loop, tripled the stream's latency (issue 30)
API_CLIENTS = 8
API_CLIENTS_RATE = 76.0


def scenario_readers(run: Run, seconds: float, pages: int = 20, requests_per_s: float = 50.0) -> None:
    """Latency at 300/s without readers and with ``pages`` pages, ``requests_per_s`` requests of theirs and
    the API's clients (``API_CLIENTS`` tokens, ``API_CLIENTS_RATE`` requests/s) on the query API's process
    (the screen's), in balanced phases (A B B A B A A B) on one worker and one screen."""
    with run.namespace("readers") as ns:
        log_dir = run.run_dir / "readers"
        log_dir.mkdir(parents=True, exist_ok=True)
        worker = start_worker(ns, 1, log_dir, run.worker_env)
        tokens = log_dir / "api-tokens.toml"
        tokens.unlink(missing_ok=True)
        token = create_token(tokens, "bench-viewer", "viewer")
        clients = [create_token(tokens, f"bench-client-{n}", "viewer") for n in range(API_CLIENTS)]
        port = free_port()
        env = ns.env(STREAM_APP_SCREEN_PORT=str(port), STREAM_APP_API_TOKENS_FILE=str(tokens))
        screen = Process.start(
            "screen", [sys.executable, "-m", "stream_app", "screen"], env, log_dir, log_dir
        )
        address = f"http://127.0.0.1:{port}"
        tracker = Tracker()
        output = OutputReader(ns, tracker)
        thread = threading.Thread(target=output.run, name="bench-output-reader", daemon=True)
        phases: list[dict[str, Any]] = []
        running: list[subprocess.Popen[bytes]] = []
        try:
            worker.wait_for_line(READY_LINE)
            _wait_following(address, screen)
            _warm(ns, worker)
            thread.start()
            output.ready.wait(15)
            # A B B A B A A B: each kind sits as early and as late on average (the state grows and
            # the latency drifts upward over a run, readers or not)
            for n, with_readers in enumerate((False, True, True, False, True, False, False, True)):
                readers = None
                if with_readers:  # a process of its own, like the browsers it stands for
                    argv = [
                        sys.executable,
                        "-m",
                        "bench.readers",
                        address,
                        token,
                        str(pages),
                        str(requests_per_s),
                        ",".join(clients),
                        str(API_CLIENTS_RATE),
                    ]
                    readers = subprocess.Popen(  # noqa: S603 - this Python, arguments built here
                        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ns.env()
                    )
                    running.append(readers)
                    time.sleep(3.0)  # the pages loaded and following
                phases.append(
                    _readers_phase(ns, worker, screen, tracker, seconds=seconds, seed=30 + n, readers=readers)
                )
        finally:
            for process in running:  # a phase that failed leaves its readers running
                if process.poll() is None:
                    process.kill()
            output.stop.set()
            if thread.is_alive():
                thread.join(15)
            screen.stop()
            worker.stop()
        quiet = [p["to_consolidated_ms"]["p99"] for p in phases if p["readers"] is None]
        busy = [p["to_consolidated_ms"]["p99"] for p in phases if p["readers"] is not None]
        run.results["readers"] = {
            "rate_offered": READERS_RATE,
            "seconds_per_phase": seconds,
            "phases": phases,
            "p99_ms_without_readers": sum(quiet) / len(quiet) if quiet else math.nan,
            "p99_ms_with_readers": sum(busy) / len(busy) if busy else math.nan,
        }
        _log_readers(run, phases)


def _log_readers(run: Run, phases: list[dict[str, Any]]) -> None:
    for phase in phases:
        c, r = phase["to_consolidated_ms"], phase["readers"]
        said = "no readers"
        if r is not None:
            answers = r["answer_ms"]
            said = (
                f"{r['pages']} pages + {r.get('api_clients', 0)} API clients, {r['requests_per_s']:.0f} req/s"
                f" (answers p50 {answers['p50']:.0f}"
                f" p99 {answers['p99']:.0f} ms, {r['failed']} failed {r['failures']}, "
                f"{r['alert_events_received']:,} alert events)"
            )
        cpu = f"worker {phase['worker_cpu_share']:.0%} CPU, screen {phase['screen_cpu_share']:.0%}"
        if r is not None:
            cpu += f", readers {r['cpu_share']:.0%}"
        run.log(f"  {said}: p50 {c['p50']:.0f} p99 {c['p99']:.0f} ms ({cpu})")


def _wait_following(address: str, screen: Process, timeout: float = 60.0) -> None:
    """Until the screen answers and reads the alerts topic."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen.check_alive()
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{address}/livez", timeout=2) as response,  # noqa: S310 - loopback
        ):
            if json.loads(response.read()).get("following_alerts"):
                return
        time.sleep(0.3)
    raise BenchError(f"the screen does not follow the alerts after {timeout:.0f} s:\n{screen.log_tail()}")


def _readers_phase(
    ns: Namespace,
    worker: Process,
    screen: Process,
    tracker: Tracker,
    *,
    seconds: float,
    seed: int,
    readers: subprocess.Popen[bytes] | None,
) -> dict[str, Any]:
    """One steady phase at :data:`READERS_RATE`: its latencies (what the tracker matched meanwhile), the
    CPU shares, and what the readers (if any) saw, once they are told to stop."""
    screen_cpu, children = screen.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    phase = _steady_phase(ns, worker, tracker, seconds, seed)
    phase["screen_cpu_share"] = (screen.cpu_seconds() - screen_cpu) / (time.perf_counter() - began)
    phase["readers"] = None
    if readers is not None:
        out, _ = readers.communicate(b"", timeout=60)
        phase["readers"] = json.loads(out)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = used.ru_utime + used.ru_stime - children.ru_utime - children.ru_stime
        phase["readers"]["cpu_share"] = cpu / (time.perf_counter() - began)
    return phase


def _steady_phase(
    ns: Namespace, worker: Process, tracker: Tracker, seconds: float, seed: int
) -> dict[str, Any]:
    """One steady phase at :data:`READERS_RATE`; its latencies (what the tracker matched meanwhile)."""
    count = round(READERS_RATE * seconds)
    lead = 3.0 + count * 60e-6
    items = generate_mix(
        ns.blueprint, count, seed=seed, first_s=time.time() + lead, step_s=1 / READERS_RATE, keep_meta=True
    ).items
    first = len(tracker.to_consolidated)
    cpu0, wall0 = worker.cpu_seconds(), time.perf_counter()
    sending = send_steadily(ns, items, READERS_RATE, tracker)
    deadline = time.monotonic() + 60.0
    while tracker.unmatched() and time.monotonic() < deadline and worker.alive():
        time.sleep(0.2)
    return {
        "sender": sending,
        "to_consolidated_ms": percentiles(tracker.to_consolidated[first:], tracker.unmatched()),
        "worker_cpu_share": (worker.cpu_seconds() - cpu0) / (time.perf_counter() - wall0),
    }


def _stage_batches(sample: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per stage: batches, mean records per batch and mean time per batch (from the worker's /metrics)."""
    out: dict[str, dict[str, float]] = {}
    for key, value in sample.items():
        if key.startswith("stream_app_stage_batch_seconds_count{"):
            stage = key.split('stage="', 1)[1].split('"', 1)[0]
            seconds = sample.get(key.replace("_count{", "_sum{"), 0.0)
            records = sample.get(f'stream_app_batch_size_sum{{agent="{stage}"}}', 0.0)
            batches = max(1.0, value)
            out[stage] = {
                "batches": value,
                "mean_records": records / batches,
                "mean_ms": seconds / batches * 1000,
            }
    return out


class LiveProbe:
    """A live flood crest at a new hydrological station each tenth of a drain's progress: each raises
    a FIRING alert (water level, min_count 1), timed from its produce call to the alert being read."""

    def __init__(self, ns: Namespace, tracker: Tracker) -> None:
        self.ns = ns
        self.tracker = tracker
        catalogue = ns.blueprint.catalogue
        reporter = next(r for r, spec in catalogue.reporters.items() if "HYD.WATER_LEVEL" in spec.indicators)
        self.reporter = reporter
        self.stations = [
            (code, s.region, s.levels[-1].lower)
            for code, s in sorted(catalogue.stations.items())
            if s.levels_indicator == "HYD.WATER_LEVEL" and s.levels
        ]
        self.sent = 0
        self.producer = Producer(
            {**confluent_config(ns.settings), "acks": "all", "linger.ms": 0, "log_level": 3}
        )

    def maybe_send(self, progress: float) -> None:
        if self.sent >= len(self.stations) or progress < (self.sent + 1) / (len(self.stations) + 1):
            return
        station, region, top = self.stations[self.sent]
        now_ms = int(time.time() * 1000)
        observation_id = f"live-probe-{uuid.uuid4().hex[:12]}"
        record: dict[str, Any] = {
            "observation_id": observation_id,
            "revision": 0,
            "reporter": self.reporter,
            "indicator": "HYD.WATER_LEVEL",
            "region": region,
            "station": station,
            "value": float(top) + 1.0,
            "unit": "m",
            "event_time": now_ms,
            "report_time": now_ms,
            "quality": "FINAL",
            "period": None,
            "breakdowns": {},
        }
        value = codecs.encode(self.ns.blueprint.schemas.latest("observation"), record)
        with self.tracker.lock:
            self.tracker.produced_at[observation_id] = time.perf_counter()
        self.producer.produce(self.ns.blueprint.input_topic(self.reporter).name, value, station.encode())
        self.producer.flush(10)
        self.sent += 1


def scenario_backfill(run: Run) -> None:
    span = run.sizes.history_span
    with run.namespace("backfill") as ns:
        files, gen_seconds = write_history(ns, run.run_dir / "history", span)
        rows = sum(f.rows for f in files)
        run.log(f"  history {span}: {rows:,} rows in {len(files)} files, generated in {gen_seconds:.1f} s")
        produce_seconds = produce_history(ns, files)
        run.log(f"  produced in {produce_seconds:.1f} s = {rows / produce_seconds:,.0f}/s")
        # What Kafka holds is what the worker must drain (a row produce refused is not there).
        sent = sum(high_watermarks(ns.settings, ns.input_topics()).values())
        worker = start_worker(ns, 1, run.run_dir / "backfill", run.worker_env)
        tracker = Tracker()
        reader = OutputReader(ns, tracker)
        thread = threading.Thread(target=reader.run, name="bench-live-reader", daemon=True)
        thread.start()
        reader.ready.wait(15)
        probe = LiveProbe(ns, tracker)
        try:
            drain = wait_drained(
                ns, [worker], sent, run.timeout(sent, rate_floor=300.0), on_progress=probe.maybe_send
            )
            settled = wait_settled(ns, worker)
            time.sleep(2.0)  # the last probe's alert
        finally:
            reader.stop.set()
            thread.join(15)
            worker.stop()
        live = percentiles(tracker.to_alert, missing=max(0, probe.sent - len(tracker.to_alert)))
        run.log(
            f"  live flood alerts while the history drained: {probe.sent} sent, "
            f"p50/p99/max {live['p50']:.0f}/{live['p99']:.0f}/{live['max']:.0f} ms"
        )
        for f in files:
            with contextlib.suppress(OSError):
                f.path.unlink()
        run.results["backfill"] = {
            "span": span,
            "rows": rows,
            "records_on_kafka": sent,
            "files": {f.reporter: f.rows for f in files},
            "generate_seconds": gen_seconds,
            "produce": {"seconds": produce_seconds, "rate": rows / produce_seconds},
            "drain": _drain_json(drain),
            # after the drain: the last closed periods the history changed, published once settled
            "settle_seconds": settled,
            "live": {"probes": probe.sent, "to_alert_ms": live},
        }
        run.log(
            f"  drained in {drain.seconds:.1f} s = {drain.rate:,.0f}/s; "
            f"the last closed periods published {settled:.1f} s later"
        )


def wait_settled(ns: Namespace, worker: Any, limit_s: float = 180.0) -> float:
    """Seconds from now until the worker has published the closed periods a history load changed:
    they are held ``STREAM_APP_BULK_SETTLE_S`` and published at the entity's next tick (every
    ``STREAM_APP_TICK_INTERVAL_S``). Settled: no period closed for longer than both together."""
    quiet = ns.settings.bulk_settle_s + ns.settings.tick_interval_s + 2.0
    started = last_change = time.monotonic()
    key = 'stream_app_consolidated_events_total{kind="period_close"}'
    seen = worker.metrics().get(key, 0.0)
    while time.monotonic() - last_change < quiet and time.monotonic() - started < limit_s:
        time.sleep(0.5)
        now = worker.metrics().get(key, 0.0)
        if now != seen:
            seen, last_change = now, time.monotonic()
    return last_change - started


def _drain_json(drain: Drain) -> dict[str, Any]:
    return {
        "records": drain.records,
        "seconds": drain.seconds,
        "rate": drain.rate,
        "wall_seconds": drain.wall_seconds,
        "accepted": drain.accepted,
        "rejected": drain.rejected,
        "produced": drain.produced,
        "cpu_seconds": drain.cpu_seconds,
        "cpu_seconds_from_first_record": drain.cpu_seconds_from_first,
        "peak_rss_bytes": drain.peak_rss_bytes,
        "stage_busy_seconds": drain.stage_busy_seconds,
        "stage_batches": drain.stage_batches,
    }


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1") or 1))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness, not speed")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}"
    )
    parser.add_argument("--drain", type=int, help="observations in the drains (default 500000 × scale)")
    parser.add_argument("--peer-records", type=int, help="records for naive Faust and Quix (100000 × scale)")
    parser.add_argument("--latency-rate", type=float, help="offered load, observations/s (2000)")
    parser.add_argument("--latency-seconds", type=float, help="seconds of steady load (60)")
    parser.add_argument(
        "--sustainable-rate",
        type=float,
        default=None,
        help="a second, lower offered load for the latency (default 1000/s, none with --smoke; 0: none)",
    )
    parser.add_argument("--soak-rate", type=float, default=SOAK_RATE, help="the soak's steady load (300/s)")
    parser.add_argument("--soak-seconds", type=float, help="the soak's length (60; 5 with --smoke)")
    parser.add_argument(
        "--no-peer-latency",
        dest="peer_latency",
        action="store_false",
        help="no Quix peer in latency runs",
    )
    parser.add_argument("--history-days", type=int, help="days of history, ending 2025-12-31 (2010-2025)")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="no py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the namespaces (topics, keys) for a look")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (.local/bench)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="STREAM_APP_X=V",
        help="a setting for the worker processes (tuning the worker by its own settings)",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.sustainable_rate is None:
        args.sustainable_rate = 0.0 if args.smoke else 1000.0
    if args.soak_seconds is None:
        args.soak_seconds = SMOKE_SOAK_SECONDS if args.smoke else SOAK_SECONDS
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    for item in args.worker_env:
        if not item.startswith("STREAM_APP_") or "=" not in item:
            parser.error(f"--worker-env {item!r}: expected STREAM_APP_NAME=VALUE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    base = Settings()
    _preflight(base)
    sizes = _sizes(args)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = args.out / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    results: dict[str, Any] = {
        "benchmark": "stream-app end to end",
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sizes": {**sizes.__dict__, "history_span": sizes.history_span, "smoke": args.smoke},
        "machine": _machine(),
        "code": _revision(),
        "worker_settings": worker_env,
    }
    run = Run(args, base, sizes, run_dir, results, worker_env)
    steps = _steps(run, load_blueprint(base))
    failures = 0
    for title, step in steps:
        run.log(f"{title} ...")
        began = time.perf_counter()
        try:
            step()
        except (BenchError, RuntimeError) as exc:
            failures += 1
            results.setdefault("failures", {})[title] = str(exc)[-3000:]
            run.log(f"  FAILED: {str(exc)[:2000]}")
        run.log(f"  ({time.perf_counter() - began:.0f} s)")
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = report.rows(results)
    results["table"] = rows
    results["verdicts"] = report.verdicts(results)
    json_path = args.out / "results.json"
    json_path.write_text(json.dumps(report.json_safe(results), indent=2) + "\n", encoding="utf-8")
    (run_dir / "results.json").write_text(json_path.read_text(encoding="utf-8"), encoding="utf-8")
    print()
    print(report.table(rows))
    print(report.profile_table(results.get("profile")))
    print(report.verdict_table(results["verdicts"]))
    chart = report.chart(results, args.out / "results.png")
    print(f"\nresults: {json_path}" + (f", chart: {chart}" if chart else ", no chart (matplotlib missing)"))
    print(f"logs and profiles: {run_dir}")
    return 1 if failures else 0


def _steps(run: Run, blueprint: Blueprint) -> list[tuple[str, Callable[[], None]]]:
    """The scenarios asked for, in order; the mix is generated once for those that need it."""
    args, sizes, results = run.args, run.sizes, run.results
    steps: list[tuple[str, Callable[[], None]]] = []
    needs_mix = {"drain", "peers", "scale_out"} & set(args.only)
    mix: Mix | None = None
    if needs_mix:
        run.log(f"generating {sizes.drain:,} observations of the simulator's live mix ...")
        mix = generate_mix(blueprint, sizes.drain)
        results["input"] = mix.describe()
        run.log(
            f"  {mix.describe()['records']:,} in {mix.seconds_to_generate:.1f} s: "
            f"{mix.describe()['above_alert_level_share']:.1%} at or above an alert level, "
            f"{mix.describe()['invalid_share']:.1%} invalid, {mix.describe()['json_share']:.1%} JSON"
        )
    if mix is not None and "drain" in args.only:
        steps.append(("drain (1 worker)", lambda: scenario_drain(run, mix)))
    if mix is not None and "peers" in args.only:
        steps.append(
            ("side by side: floor, naive Faust, Quix Streams", lambda: scenario_side_by_side(run, mix))
        )
    if mix is not None and "scale_out" in args.only:
        steps.append(("scale-out (2 workers)", lambda: scenario_scale_out(run, mix)))
    if "latency" in args.only:
        steps.append(
            ("steady latency", lambda: scenario_latency(run, sizes.latency_rate, sizes.latency_seconds))
        )
        if args.peer_latency:
            steps.append(
                (
                    "steady latency, Quix Streams peer",
                    lambda: scenario_peer_latency(
                        run, sizes.latency_rate, sizes.latency_seconds, "latency_peer"
                    ),
                )
            )
        if args.sustainable_rate:
            # The same at a load the worker keeps up with: its own latency, not a queue's.
            sustainable_s = min(30.0, sizes.latency_seconds)
            steps.append(
                (
                    f"steady latency at {args.sustainable_rate:g}/s",
                    lambda: scenario_latency(
                        run, args.sustainable_rate, sustainable_s, "latency_sustainable"
                    ),
                )
            )
            if args.peer_latency:
                steps.append(
                    (
                        f"steady latency at {args.sustainable_rate:g}/s, Quix Streams peer",
                        lambda: scenario_peer_latency(
                            run, args.sustainable_rate, sustainable_s, "latency_sustainable_peer"
                        ),
                    )
                )
    if "backfill" in args.only:
        steps.append(("backfill", lambda: scenario_backfill(run)))
    if "readers" in args.only:
        seconds = min(60.0, sizes.latency_seconds)
        steps.append(("readers on the center's screen", lambda: scenario_readers(run, seconds)))
    if "soak" in args.only:
        steps.append(
            (
                f"soak at {args.soak_rate:g}/s for {args.soak_seconds:g} s",
                lambda: scenario_soak(run, args.soak_rate, args.soak_seconds),
            )
        )
    return steps


def _preflight(base: Settings) -> None:
    check_loopback(base)
    if not has_lz4():
        # The input is lz4-compressed, as `stream-app produce` writes it; aiokafka decompresses
        # lz4 only with cramjam (a dependency of the project).
        raise SystemExit(
            "aiokafka cannot read lz4-compressed batches here (no cramjam): reinstall the project "
            "(pip install -c constraints.txt -e '.[bench]')"
        )


def _sizes(args: argparse.Namespace) -> Sizes:
    """The sizes of ``--scale`` or ``--smoke``, with any size given on the command line."""
    sizes = sizes_for(args.scale, args.smoke)
    overrides = {
        "drain": args.drain,
        "peer_records": args.peer_records,
        "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds,
        "history_days": args.history_days,
    }
    return Sizes(**{**sizes.__dict__, **{k: v for k, v in overrides.items() if v is not None}})


def _revision() -> dict[str, Any]:
    """The commit measured, and whether the checkout had uncommitted changes."""
    import subprocess  # noqa: PLC0415 - only here

    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed git command lines
            ["git", *args],  # noqa: S607 - git from PATH
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "note": "services and the benchmark share the machine; compare ratios taken in one run",
    }


if __name__ == "__main__":
    sys.exit(main())
