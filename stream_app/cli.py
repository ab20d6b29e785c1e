"""stream-app: the national reporting stream processor (worker, topics, simulator, live tail, demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stream_app.exceptions import ConfigurationError, ServiceUnreachableError
from stream_app.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a stream-processing worker")

    topics = sub.add_parser("topics", help="topics declared in topics/topics.toml")
    topics.add_argument("action", choices=["plan", "apply", "list"])

    sim = sub.add_parser("simulate", help="send a simulated feed of observations")
    sim.add_argument("--rate", type=float, default=5.0, help="records per second (0: as fast as possible)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run")
    sim.add_argument("--count", type=int, default=None, help="records to send")

    tl = sub.add_parser("tail", help="print the center's alerts and consolidated events as they happen")
    tl.add_argument("--from-beginning", action="store_true")
    tl.add_argument("--duration", type=float, default=None)

    demo = sub.add_parser("demo", help="topics + worker + simulated feed, outputs printed live")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--rate", type=float, default=6.0, help="simulated records per second")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    settings = Settings()
    try:
        return _dispatch(args, settings)
    except (ConfigurationError, ServiceUnreachableError) as exc:
        print(f"stream-app {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "worker":
        from stream_app.worker import run_worker

        return run_worker(settings)
    if args.command == "demo":
        from stream_app.demo import run_demo

        return run_demo(settings, args.duration, args.rate)

    from stream_app.runtime import load_blueprint

    blueprint = load_blueprint(settings)
    if args.command == "topics":
        from stream_app import topics

        if args.action == "list":
            for spec in blueprint.topics:
                print(f"{spec.name:<48} {spec.role:<12} partitions={spec.partitions} {spec.config}")
            return 0
        changes = (topics.plan if args.action == "plan" else topics.apply)(settings, blueprint.topics)
        verb = "to change" if args.action == "plan" else "changed"
        for change in changes:
            print(f"{change.action:<18} {change.topic:<48} {change.detail}")
        print(f"{len(changes)} {verb}")
        return 0
    if args.command == "simulate":
        from stream_app import simulate

        topic = next(t.name for t in blueprint.topics if t.role == "input")
        sent, invalid = simulate.run(
            settings, blueprint.schemas, topic, rate=args.rate, duration=args.duration, count=args.count
        )
        print(f"sent {sent} records to {topic} ({invalid} meant to be rejected)")
        return 0
    if args.command == "tail":
        import time

        from stream_app import tail

        started = time.monotonic()
        outputs = {
            blueprint.topic_by_role("alerts").name: "alert",
            blueprint.topic_by_role("consolidated").name: "consolidated",
        }
        tail.follow(
            settings,
            blueprint.schemas,
            outputs,
            lambda _s, line: print(line, flush=True),
            stop=lambda: args.duration is not None and time.monotonic() - started > args.duration,
            from_beginning=args.from_beginning,
            colour=sys.stdout.isatty(),
        )
        return 0
    raise AssertionError(args.command)
