"""Where a worker's CPU goes: ``py-spy record`` during a drain, samples grouped by what they do.

Each sample is a stack; it is put in the category of its innermost frame that belongs to a known
part (fastavro → decode/encode, ``stream_app/validation.py`` → validation, aiokafka → the Kafka
client, faust/mode → the Faust stream and ack machinery, ...). py-spy leaves idle threads out by
default, so the samples are where CPU time is spent.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Frames that only say "the loop is scheduling something": a sample there belongs to whatever
# called into the loop's machinery (Faust's wait_first creating and cancelling tasks, say).
GENERIC = "asyncio event loop (scheduling, epoll)"
# (category, substrings of a frame "function (file:line)"); the first rule matching the innermost
# matching frame wins, so more specific rules come first.
ENCODE = "encode (Avro, outputs)"
DECODE = "decode (Avro/JSON, input)"
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        ENCODE,
        ("schemaless_writer", "fastavro/_write", "Compiled.write (", "encode (stream_app/wire/codecs.py"),
    ),
    (DECODE, ("fastavro/", "wire/codecs.py", "wire/compiled.py", "(<avro ", "json/decoder", "json/__init__")),
    (
        "validation",
        (
            "domain/validation.py",
            "domain/calendar.py",
            "domain/catalogue/",
            "domain/clock.py",
            "wire/intake.py",
        ),
    ),
    ("rules (alerting)", ("domain/alerting/",)),
    (
        "state step (entity, aggregates, periods)",
        ("domain/entity/", "domain/aggregates.py", "domain/consolidation.py", "domain/rollup.py"),
    ),
    ("redis (client, state store)", ("stream_app/state/", "/redis/", "hiredis")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("logging (structlog)", ("structlog/", "logging/__init__", "stream_app/logs.py")),
    (
        "produce (librdkafka producer, publisher)",
        (
            "kafka/producer.py",
            "kafka/publisher.py",
            "confluent_kafka",
            "aiokafka/producer",
            "faust/topics.py",
        ),
    ),
    # the consumer's fetch: the librdkafka driver's thread (its C is not sampled), or aiokafka's
    ("Kafka client (fetch: librdkafka driver, aiokafka)", ("kafka/rdlanes/", "aiokafka/", "kafka/protocol")),
    # the loops themselves, the main thread's (mode's Worker) and the consumer thread's: generic
    (GENERIC, ("execute_from_commandline (", "_start_thread (")),
    ("Faust consumer, lanes, acks and machinery", ("kafka/lanes.py", "faust/", "mode/")),
    ("stages (agents: batching, routing, outputs)", ("agents/",)),
    (GENERIC, ("asyncio/", "uvloop", "selectors.py")),
)
OTHER = "other"


def py_spy() -> str | None:
    """The py-spy executable next to this Python, or on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    """A running ``py-spy record``."""

    proc: subprocess.Popen[bytes]
    output: Path

    @classmethod
    def start(cls, pid: int, output: Path, rate: int = 200) -> Recording | None:
        exe = py_spy()
        if exe is None:
            return None
        log = output.with_suffix(".log").open("wb")
        argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking"]
        argv += ["--format", "raw", "--output", str(output)]
        proc = subprocess.Popen(  # noqa: S603 - py-spy from the venv, arguments built here
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return cls(proc, output)

    def stop(self) -> Path | None:
        """Stop sampling and write the stacks; the path, or None if py-spy failed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output if self.output.exists() and self.output.stat().st_size else None


def categorise(frames: list[str]) -> str:
    """The category of one stack (frames outermost first): its innermost frame of a known part,
    looking past the event loop's own frames to the code that called into them."""
    generic = False
    for frame in reversed(frames):
        category = _category_of(frame)
        if category == GENERIC:
            generic = True
        elif category is not None:
            return category
    return GENERIC if generic else OTHER


def _category_of(frame: str) -> str | None:
    if "(<avro " in frame:  # the compiled codecs' generated functions: _wN writes, _rN reads
        return ENCODE if frame.startswith("_w") else DECODE
    for category, needles in RULES:
        if any(needle in frame for needle in needles):
            return category
    return None


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy ``raw`` (collapsed) output: ``frame;frame;... count`` per line."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: Path, cpu_seconds: float, records: int, top: int = 15) -> dict[str, Any]:
    """Share of samples and CPU µs per record by category; the hottest functions (self time)."""
    stacks = parse_collapsed(path.read_text(encoding="utf-8", errors="replace"))
    by_category: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        by_category[categorise(frames)] += count
        leaves[_short(frames[-1])] += count
    total = sum(by_category.values()) or 1
    per_record_us = 1e6 * cpu_seconds / records if records else 0.0
    return {
        "samples": total,
        "cpu_seconds": cpu_seconds,
        "cpu_us_per_record": per_record_us,
        "categories": [
            {"category": name, "share": count / total, "us_per_record": per_record_us * count / total}
            for name, count in by_category.most_common()
        ],
        "top_self": [{"frame": name, "share": count / total} for name, count in leaves.most_common(top)],
        "stacks_file": str(path),
    }


def main(argv: list[str] | None = None) -> int:
    """Summarise a saved ``py-spy record --format raw`` file again (after changing the rules)."""
    import argparse  # noqa: PLC0415 - only for this command line
    import json  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m bench.profiling")
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--cpu-seconds", type=float, required=True)
    parser.add_argument("--records", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(summarise(args.stacks, args.cpu_seconds, args.records), indent=2))
    return 0


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:123)`` -> ``func (pkg/mod.py:123)``."""
    name, _, where = frame.partition(" (")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where}" if where else name


if __name__ == "__main__":
    sys.exit(main())
