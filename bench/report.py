"""The benchmark's results as a table, a JSON document and a chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TARGETS = {
    "quix_ratio": 1.5,  # one worker / the Quix Streams peer, same run (issue 28; issue 15's was 1.3)
    "naive_ratio": 6.0,  # one worker / naive Faust, same run
    "scale_out_ratio": 1.8,  # two workers / one (issue 28; issue 15's was 1.7)
    "history_ratio": 1.0,  # the backfill's drain rate / the live drain's, same run (issue 28)
    "drain_cpu_us": 150.0,  # the worker's CPU per observation in the drain, from its first record
    "backfill_minutes": 10.0,  # 2010-2025 daily history, produced and drained
    "live_during_backfill_p99_ms": 2_000.0,  # a live flood alert while the backfill drains
    "latency_rate": 2_000.0,  # observations/s offered in the latency run
    "p99_ms": 250.0,  # produced -> alert consumed, at latency_rate
    "rss_mb": 250.0,  # worker peak RSS
    "readers_ratio": 1.1,  # the pipeline's p99 at 300/s with the API process's readers / without (16, 30)
    "peer_latency_rate": 1_000.0,  # observations/s of the side-by-side latency target (issue 28)
    "peer_p99_ratio": 1.0,  # worker p99 produced -> alert / Quix peer p99 produced -> output, same load
    "soak_ratio": 2.0,  # CPU per record at a steady 300/s / in the drain, same run (issue 28)
}

# (the worker's latency result, the Quix peer's under the same load) in results.json
LATENCY_PAIRS = (("latency", "latency_peer"), ("latency_sustainable", "latency_sustainable_peer"))


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the hot-path issue: what was measured, the goal, and pass, FAIL or not measured."""
    out: list[dict[str, Any]] = []

    def judge(
        name: str, measured: float | None, goal: float, *, at_least: bool, unit: str, why: str = ""
    ) -> None:
        if measured is None or not math.isfinite(measured):
            verdict = "not measured" + (f" ({why})" if why else "")
        else:
            verdict = "pass" if (measured >= goal if at_least else measured <= goal) else "FAIL"
        out.append(
            {
                "target": name,
                "measured": measured,
                "goal": f"{'≥' if at_least else '≤'} {goal:,.4g}{unit}",
                "verdict": verdict,
                "unit": unit,
            }
        )

    drain_rate = _get(results, "drain", "rate")
    quix = _get(results, "peers", "quix", "rate")
    naive = _get(results, "peers", "naive_faust", "rate")
    two = _get(results, "scale_out", "rate")
    judge(
        "1 worker / Quix Streams peer",
        _ratio(drain_rate, quix),
        TARGETS["quix_ratio"],
        at_least=True,
        unit="×",
    )
    judge(
        "1 worker / naive Faust", _ratio(drain_rate, naive), TARGETS["naive_ratio"], at_least=True, unit="×"
    )
    judge(
        "2 workers / 1 worker", _ratio(two, drain_rate), TARGETS["scale_out_ratio"], at_least=True, unit="×"
    )
    drain = results.get("drain") or {}
    drain_cpu = drain.get("cpu_seconds_from_first_record")
    judge(
        "CPU per observation in the drain",
        1e6 * drain_cpu / drain["records"] if drain_cpu and drain.get("records") else None,
        TARGETS["drain_cpu_us"],
        at_least=False,
        unit=" µs",
    )
    backfill = results.get("backfill") or {}
    judge(
        "history / live: backfill drain rate / live drain rate",
        _ratio(_get(backfill, "drain", "rate"), drain_rate),
        TARGETS["history_ratio"],
        at_least=True,
        unit="×",
    )
    full = backfill.get("span", "").startswith("2010-01-01")
    minutes = None
    if backfill.get("drain") and backfill.get("produce"):
        settle = backfill.get("settle_seconds", 0.0)  # the last closed periods' publication
        minutes = (backfill["produce"]["seconds"] + backfill["drain"]["seconds"] + settle) / 60
    judge(
        "backfill 2010-2025 produced + drained + settled",
        minutes if full else None,
        TARGETS["backfill_minutes"],
        at_least=False,
        unit=" min",
        why="" if full or not backfill else f"only {backfill.get('span')}",
    )
    judge(
        "live alert p99 while the backfill drains",
        _get(results, "backfill", "live", "to_alert_ms", "p99"),
        TARGETS["live_during_backfill_p99_ms"],
        at_least=False,
        unit=" ms",
    )
    latency = results.get("latency") or {}
    at_rate = latency.get("rate_offered") == TARGETS["latency_rate"]
    judge(
        f"p99 produced -> alert at {TARGETS['latency_rate']:,.0f}/s",
        _get(latency, "to_alert_ms", "p99") if at_rate else None,
        TARGETS["p99_ms"],
        at_least=False,
        unit=" ms",
        why="" if at_rate or not latency else f"offered {latency.get('rate_offered')}/s",
    )
    judge(
        f"p99 produced -> alert at {TARGETS['peer_latency_rate']:,.0f}/s / Quix peer p99",
        _peer_latency_ratio(results, TARGETS["peer_latency_rate"]),
        TARGETS["peer_p99_ratio"],
        at_least=False,
        unit="×",
    )
    judge(
        "soak: CPU per record at 300/s / the drain's",
        _get(results, "soak", "ratio_to_drain"),
        TARGETS["soak_ratio"],
        at_least=False,
        unit="×",
    )
    readers = results.get("readers") or {}
    judge(
        "p99 at 300/s with 20 pages + 50 req/s + 8 API clients (76 req/s) / without",
        _ratio(readers.get("p99_ms_with_readers"), readers.get("p99_ms_without_readers")),
        TARGETS["readers_ratio"],
        at_least=False,
        unit="×",
    )
    rss = [
        _get(results, "drain", "peak_rss_bytes"),
        _get(latency, "worker_peak_rss_bytes"),
    ]
    peaks = [max(v) if isinstance(v, list) else v for v in rss if v]
    judge(
        "worker peak RSS",
        _mb(max(peaks)) if peaks else None,
        TARGETS["rss_mb"],
        at_least=False,
        unit=" MB",
    )
    return out


def _peer_latency_ratio(results: dict[str, Any], rate: float) -> float | None:
    """The worker's p99 produced -> alert over the Quix peer's p99 produced -> output, at ``rate``."""
    for worker_key, peer_key in LATENCY_PAIRS:
        worker, peer = results.get(worker_key) or {}, results.get(peer_key) or {}
        if worker.get("rate_offered") == rate == peer.get("rate_offered"):
            return _ratio(_get(worker, "to_alert_ms", "p99"), _get(peer, "to_output_ms", "p99"))
    return None


def verdict_table(items: list[dict[str, Any]]) -> str:
    """The targets, one line each, for the terminal."""
    lines = ["", f"{'target':48} {'measured':>12} {'goal':>12}  verdict", "-" * 86]
    for v in items:
        measured = _num(v["measured"], "{:,.2f}" if v["unit"] == "×" else "{:,.0f}")
        lines.append(
            f"{v['target'][:48]:48} {measured + v['unit'].strip():>12} {v['goal']:>12}  {v['verdict']}"
        )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b <= 0:
        return None
    return a / b


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured figure: name, records, seconds, records/s, ratio to the floor, note."""
    out: list[dict[str, Any]] = []
    peers = results.get("peers", {})
    floor_rate = _get(peers, "floor", "rate")

    def add(name: str, item: dict[str, Any] | None, note: str = "") -> None:
        if not item or "rate" not in item:
            reason = (item or {}).get("skipped") or (item or {}).get("failed") or "not run"
            out.append(
                {"row": name, "records": None, "seconds": None, "rate": None, "ratio": None, "note": reason}
            )
            return
        rate = item["rate"]
        ratio = rate / floor_rate if floor_rate and math.isfinite(rate) else None
        out.append(
            {
                "row": name,
                "records": item.get("records"),
                "seconds": item.get("seconds"),
                "rate": rate,
                "ratio": ratio,
                "note": note,
            }
        )

    add("floor: confluent-kafka consume + decode", peers.get("floor"), "no state, no outputs")
    drain = results.get("drain")
    rss = _mb(drain["peak_rss_bytes"][0]) if drain and drain.get("peak_rss_bytes") else None
    redis_mb = _mb(drain["redis"]["bytes_of_keys"]) if drain and drain.get("redis") else None
    add(
        "this worker: drain, 1 worker",
        drain,
        f"peak RSS {rss:.0f} MB, Redis {redis_mb:.1f} MB of keys" if rss and redis_mb is not None else "",
    )
    add("naive Faust: per-record awaits", peers.get("naive_faust"), "same input as the floor")
    add("Quix Streams peer", peers.get("quix"), "same input as the floor")
    add("this worker: drain, 2 workers", results.get("scale_out"), "one consumer group")
    backfill = results.get("backfill")
    if backfill:
        span = backfill.get("span", "")
        add(
            "backfill: stream-app produce",
            {"records": backfill["rows"], **backfill["produce"]},
            f"daily history {span}",
        )
        add(
            "backfill: drain, 1 worker", backfill.get("drain"), f"{backfill['drain']['seconds'] / 60:.1f} min"
        )
    else:
        add("backfill", None)
    for key, peer_key in LATENCY_PAIRS:
        _latency_row(out, results.get(key), required=key == "latency")
        _hops_row(out, results.get(key))
        _peer_latency_row(out, results.get(peer_key), results.get(key))
    _soak_row(out, results.get("soak"))
    return out


def _row(name: str, records: Any, seconds: Any, rate: Any, note: str) -> dict[str, Any]:
    return {"row": name, "records": records, "seconds": seconds, "rate": rate, "ratio": None, "note": note}


def _hops_row(out: list[dict[str, Any]], latency: dict[str, Any] | None) -> None:
    """The worker's latency per hop (p50/p99), and the consolidate step's mean batch time."""
    hops = (latency or {}).get("hops_ms")
    if not latency or not hops:
        return
    step = _get(latency, "stages", "consolidate", "mean_ms")
    note = "; ".join(f"{h} {v['p50']:.0f}/{v['p99']:.0f}" for h, v in hops.items())
    note += f" ms p50/p99; consolidate step {step:.0f} ms per batch (mean)" if step is not None else " ms"
    count = next(iter(hops.values()))["count"]
    out.append(_row(f"  hops at {latency['rate_offered']:,.0f}/s", count, None, None, note))


def _peer_latency_row(
    out: list[dict[str, Any]], peer: dict[str, Any] | None, worker: dict[str, Any] | None
) -> None:
    if not peer:
        return
    if "to_output_ms" not in peer:
        out.append(_row("  Quix peer latency", None, None, None, peer.get("skipped", "failed")))
        return
    o, a = peer["to_output_ms"], peer["to_alert_ms"]
    note = (
        f"→output p50/p95/p99 {o['p50']:.0f}/{o['p95']:.0f}/{o['p99']:.0f} ms; →alert p99 {a['p99']:.0f} ms"
    )
    ratio = _ratio(_get(worker or {}, "to_alert_ms", "p99"), o["p99"])
    if ratio is not None:
        note += f"; worker p99 →alert / peer p99 {ratio:.2f}×"
    rate = peer["sender"]["rate_achieved"]
    out.append(
        _row(
            f"  Quix peer latency at {rate:,.0f}/s",
            peer["observations_measured"],
            peer["seconds"],
            rate,
            note,
        )
    )


def _soak_row(out: list[dict[str, Any]], soak: dict[str, Any] | None) -> None:
    if not soak:
        return
    c = soak["to_consolidated_ms"]
    drain = soak.get("drain_cpu_us_per_record")
    versus = f" ({soak['ratio_to_drain']:.1f}× the drain's {drain:,.0f})" if drain else " (no drain run)"
    note = (
        f"{soak['worker_cpu_share']:.0%} of a core, {soak['cpu_us_per_record']:,.0f} µs CPU/record{versus}; "
        f"RSS {(_mb(soak['worker_rss_bytes']) or 0):.0f} MB; →consolidated p99 {c['p99']:.0f} ms"
    )
    if soak.get("idle_cpu_share") is not None:
        note += f"; idle {soak['idle_cpu_share']:.0%} of a core ({soak['idle_us_per_record']:,.0f} µs/record)"
    rate = soak["sender"]["rate_achieved"]
    out.append(
        _row(
            f"soak at {rate:,.0f}/s, tick {soak['tick_interval_s']:.0f} s",
            soak["records"],
            soak["seconds"],
            rate,
            note,
        )
    )


def _latency_row(out: list[dict[str, Any]], latency: dict[str, Any] | None, *, required: bool) -> None:
    if latency:
        c, a = latency["to_consolidated_ms"], latency["to_alert_ms"]
        offered = f"{latency['sender']['rate_achieved']:,.0f}/s for {latency['seconds']:.0f} s"
        out.append(
            {
                "row": f"latency at {offered}",
                "records": latency["observations_measured"],
                "seconds": latency["seconds"],
                "rate": latency["sender"]["rate_achieved"],
                "ratio": None,
                "note": (
                    f"→consolidated p50/p95/p99 {c['p50']:.0f}/{c['p95']:.0f}/{c['p99']:.0f} ms; "
                    f"→alert {a['p50']:.0f}/{a['p95']:.0f}/{a['p99']:.0f} ms ({a['count']:.0f} alerts)"
                ),
            }
        )
    elif required:
        out.append(
            {
                "row": "latency",
                "records": None,
                "seconds": None,
                "rate": None,
                "ratio": None,
                "note": "not run",
            }
        )


def table(items: list[dict[str, Any]]) -> str:
    """A fixed-width table for the terminal."""
    header = f"{'':44} {'records':>10} {'seconds':>8} {'records/s':>10} {'× floor':>8}  note"
    lines = [header, "-" * len(header)]
    for r in items:
        lines.append(
            f"{r['row'][:44]:44} {_num(r['records'], '{:,.0f}'):>10} {_num(r['seconds'], '{:.1f}'):>8} "
            f"{_num(r['rate'], '{:,.0f}'):>10} {_num(r['ratio'], '{:.3f}'):>8}  {r['note']}"
        )
    return "\n".join(lines)


def profile_table(profile: dict[str, Any] | None) -> str:
    """Where the worker's CPU went during the drain."""
    if not profile:
        return "\n(no profile: py-spy missing or --no-profile)"
    lines = [
        "",
        f"worker CPU during the drain: {profile['cpu_seconds']:.1f} s, "
        f"{profile['cpu_us_per_record']:.0f} µs per observation ({profile['samples']:,} py-spy samples)",
    ]
    for c in profile["categories"]:
        lines.append(f"  {c['category'][:48]:48} {c['share']:6.1%}  {c['us_per_record']:6.1f} µs/record")
    lines.append("hottest functions (self time):")
    for t in profile["top_self"][:10]:
        lines.append(f"  {t['share']:6.1%}  {t['frame'][:100]}")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Records/s per row (log scale) and the latency percentiles, as a PNG; None without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: the bench extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    measured = [
        r
        for r in results.get("table", [])
        if r["rate"] and "latency" not in r["row"] and not r["row"].startswith("soak")
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 1]})
    names = [r["row"] for r in measured]
    rates = [r["rate"] for r in measured]
    bars = left.barh(names, rates, color="#3b7dd8")
    left.set_xscale("log")
    left.invert_yaxis()
    left.set_xlabel("records/s (log scale)")
    quix = _get(results, "peers", "quix", "rate")
    if quix:  # the one-worker target: TARGETS["quix_ratio"] x the Quix Streams peer of the same run
        goal = TARGETS["quix_ratio"] * quix
        left.axvline(goal, color="#c0392b", linestyle="--", linewidth=1)
        left.text(goal, -0.6, f" target {goal:,.0f}/s", color="#c0392b", fontsize=8)
    for bar, rate in zip(bars, rates, strict=True):
        left.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {rate:,.0f}", va="center", fontsize=8
        )
    left.set_title("throughput, same machine, one run")
    latency = results.get("latency")
    if latency:
        labels = ["p50", "p95", "p99"]
        cons = [latency["to_consolidated_ms"][k] for k in labels]
        alert = [latency["to_alert_ms"][k] for k in labels]
        x = range(len(labels))
        right.bar([i - 0.2 for i in x], _finite(cons), width=0.4, label="→ consolidated")
        right.bar([i + 0.2 for i in x], _finite(alert), width=0.4, label="→ alert")
        right.axhline(TARGETS["p99_ms"], color="#c0392b", linestyle="--", linewidth=1)
        right.set_xticks(list(x), labels)
        right.set_ylabel("ms")
        right.set_title(f"latency at {latency['sender']['rate_achieved']:,.0f}/s")
        right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def json_safe(value: Any) -> Any:
    """NaN and infinities as null: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _finite(values: list[float]) -> list[float]:
    return [v if math.isfinite(v) else 0.0 for v in values]


def _num(value: float | None, fmt: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return fmt.format(value)


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1024 / 1024


def _get(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d
