"""The ``stream-app`` command line's parser: every subcommand and its options (the handlers are in
:mod:`stream_app.tools.cli`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from stream_app.domain.directives import ACTIONS
from stream_app.exit_codes import ExitCode

DESCRIPTION = (
    "stream-app: the national reporting stream processor (worker, topics, simulator, live tail, demo)."
)


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors exit with :attr:`ExitCode.USAGE` (64), not argparse's 2:
    2 is a plan's "something would change" (:mod:`stream_app.exit_codes`)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def add_output(parser: argparse.ArgumentParser) -> None:
    """``--output text|json``: the one option of every verb that lists, plans, inspects or reports.
    ``json``: one JSON document on stdout (errors stay one line on stderr), for scripts."""
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text (for a person, the default) or json (one JSON document on stdout, for scripts)",
    )


def add_progress(parser: argparse.ArgumentParser, what: str) -> None:
    """``--[no-]progress``: a progress bar on stderr; by default only when stderr is a terminal."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"a progress bar of {what} on stderr (default: only when stderr is a terminal)",
    )


class _Version(argparse.Action):
    """``--version``: ``stream-app <version>``, looked up only when asked (reading metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def version() -> str:
    """The installed package's version (its metadata); ``stream_app.__version__`` when the code runs
    from a source tree that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("stream-app")
    except metadata.PackageNotFoundError:
        import stream_app

        return stream_app.__version__


def parser() -> argparse.ArgumentParser:
    """The ``stream-app`` command line: its options and subcommands."""
    parser = Parser(prog="stream-app", description=DESCRIPTION)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a stream-processing worker")
    sub.add_parser("screen", help="serve the center's screen: the live web view of the country")
    _add_topics(sub)
    _add_acl(sub)
    _add_quotas(sub)
    _add_token(sub)
    _add_simulate(sub)
    _add_produce(sub)
    _add_tail(sub)
    _add_dlq(sub)
    _add_schemas(sub)
    _add_alerts(sub)
    _add_tick(sub)
    _add_directive(sub)
    _add_demo(sub)
    _add_state(sub)
    _add_reporter(sub)
    _add_group(sub)
    _add_monitoring(sub)
    return parser


def _add_topics(sub: Any) -> None:
    topics = sub.add_parser("topics", help="topics declared in topics/topics.toml")
    topics.add_argument(
        "action",
        choices=["plan", "apply", "list", "grow"],
        help="list: as declared; plan: the differences with the cluster (exit 2 when there are any); "
        "apply: make it so; grow: more partitions for an internal topic",
    )
    topics.add_argument("topic", nargs="?", help="grow: the internal topic (as declared in topics.toml)")
    topics.add_argument("--partitions", type=int, help="grow: the new partition count")
    add_output(topics)


def _add_quotas(sub: Any) -> None:
    _add_cluster_setting(
        sub, "quotas", "Kafka produce quotas of every reporter's user, from the catalogue (as an admin)"
    )


def _add_acl(sub: Any) -> None:
    _add_cluster_setting(sub, "acl", "Kafka ACLs derived from topics.toml and the reporters (as an admin)")


def _add_cluster_setting(sub: Any, name: str, what: str) -> None:
    """A setting the CLI manages on the cluster (``acl``, ``quotas``): ``list``, ``plan``, ``apply``."""
    managed = sub.add_parser(name, help=what)
    managed.add_argument(
        "action",
        choices=["plan", "apply", "list"],
        help="list: what is wanted; plan: the differences with the cluster (exit 2 when there are any); "
        "apply: make it so",
    )
    add_output(managed)


def _add_token(sub: Any) -> None:
    token = sub.add_parser("token", help="bearer tokens of the HTTP API")
    token_sub = token.add_subparsers(dest="token_action", required=True)
    create = token_sub.add_parser("create", help="make a token (printed once; its hash is stored)")
    create.add_argument("--name", required=True, help="who: recorded in the directives and the audit trail")
    create.add_argument(
        "--role",
        required=True,
        choices=["viewer", "operator"],
        help="viewer: reads the API; operator: may also issue directives",
    )
    create.add_argument("--file", default=None, help="tokens file (default: STREAM_APP_API_TOKENS_FILE)")
    add_output(create)


def _add_simulate(sub: Any) -> None:
    sim = sub.add_parser("simulate", help="send simulated live feeds, or write simulated history to a file")
    sim.add_argument("--rate", type=float, default=5.0, help="records per second (0: as fast as possible)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run")
    sim.add_argument("--count", type=int, default=None, help="records to send")
    sim.add_argument(
        "--scenario",
        choices=["mix", "normal", "smog", "flood"],
        default="mix",
        help="what the feeds show: normal values, a smog or flood episode, or a mix (the default)",
    )
    sim.add_argument("--reporter", action="append", help="only these reporters (repeatable)")
    sim.add_argument("--invalid-share", type=float, default=0.03, help="share of wrong records (live)")
    sim.add_argument("--seed", type=int, default=7, help="random seed: the same seed, the same records")
    sim.add_argument("--history", metavar="FROM:TO", help="write daily history (YYYY-MM-DD or YYYY)")
    sim.add_argument("--out", default=None, help="history file (.jsonl or .csv, optionally .gz)")
    sim.add_argument("--format", choices=["jsonl", "csv"], default=None, help="history file format")


def _add_produce(sub: Any) -> None:
    prod = sub.add_parser("produce", help="send a reporter's bulk file (JSONL or CSV) to its input topic")
    prod.add_argument("--reporter", required=True, help="reporter code (e.g. MAE)")
    prod.add_argument("file", help="observations, one per line (.jsonl) or row (.csv); .gz ok")
    prod.add_argument("--format", choices=["jsonl", "csv"], default=None, help="default: from the extension")
    prod.add_argument("--batch", type=int, default=10_000, help="records per Kafka batch")
    add_progress(prod, "the rows sent")
    prod.add_argument(
        "--dry-run",
        action="store_true",
        help="connect to nothing, send nothing: encode each row as it would be sent, run the intake's own "
        "checks (decoding, validation against the catalogue) and print 'line N: ok' or 'line N: <reason>: "
        "<message>'; exit 1 if any row is malformed or would be dead-lettered. What needs the worker's "
        "state (duplicates, revisions of earlier observations) is not checked",
    )
    prod.add_argument("--workers", type=int, default=None, help="parsing processes (default: by file size)")
    prod.add_argument(
        "--bulk",
        action="store_true",
        help="send to the reporter's bulk topic (history, backfills, re-sends): the worker reads it after "
        "the live feed and never lets it hold a live alert back",
    )


def _add_tail(sub: Any) -> None:
    tl = sub.add_parser("tail", help="print the center's alerts and consolidated events as they happen")
    _add_live(tl)


def _add_live(parser: argparse.ArgumentParser) -> None:
    """The options of a live view (``tail``, ``alerts tail``), which reads by assignment: no consumer
    group, so the center's and the SRE's principals may run it."""
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record kept (default: new ones only)",
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def _add_dlq(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="dead-letter topics: summarise by reason, replay after a fix")
    dlq_sub = dlq.add_subparsers(dest="dlq_action", required=True)
    inspect = dlq_sub.add_parser("inspect", help="count dead letters by reporter or stage and reason")
    inspect.add_argument("--reporter", action="append", help="only these reporters (repeatable)")
    inspect.add_argument(
        "--stage", action="append", choices=sorted(DLQ_STAGES), help="only these stages' poison (repeatable)"
    )
    add_output(inspect)
    rep = dlq_sub.add_parser("replay", help="send selected dead letters back to their source topic")
    which = rep.add_mutually_exclusive_group(required=True)
    which.add_argument("--reporter", help="a reporter's dead letters, back to its input topic")
    which.add_argument(
        "--stage", choices=sorted(DLQ_STAGES), help="a stage's poison, back to where it was read"
    )
    rep.add_argument("--reason", action="append", help="only these reason codes (repeatable)")
    rep.add_argument(
        "--offset", action="append", help="only these dead letters, as PARTITION:OFFSET (repeatable)"
    )
    rep.add_argument("--dry-run", action="store_true", help="count what would be replayed, send nothing")
    add_output(rep)


DLQ_STAGES = ("consolidate", "directives", "rollup")


def _add_schemas(sub: Any) -> None:
    sch = sub.add_parser(
        "schemas",
        help="Avro contracts: check every version reads the older ones' data; register them in a "
        "Confluent schema registry",
    )
    sch.add_argument(
        "action",
        choices=["check", "register"],
        help="check: every version reads the others' data (exit 1 if not); register: in the registry",
    )
    sch.add_argument("--dir", default=None, help="schema directory (default: STREAM_APP_SCHEMAS_DIR)")
    sch.add_argument(
        "--registry",
        default=None,
        help="register: the schema registry URL (default: STREAM_APP_SCHEMA_REGISTRY_URL)",
    )
    sch.add_argument(
        "--mode",
        default="FULL_TRANSITIVE",
        choices=["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"],
        help="check: which versions must read which; register: the compatibility level set on each "
        "subject (default FULL_TRANSITIVE: every two versions, both ways)",
    )
    add_output(sch)


def _add_alerts(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="the center's alerts, for a person at a terminal")
    alerts_sub = alerts.add_subparsers(dest="alerts_action", required=True)
    at = alerts_sub.add_parser("tail", help="a live, readable feed of alert changes, coloured by level")
    at.add_argument("--domain", help="only this catalogue domain's alerts (environment, socio_economic, ...)")
    at.add_argument("--min-level", type=int, default=0, help="only alerts at or above this level index")
    at.add_argument(
        "--lang",
        choices=["vi", "en", "both"],
        default="both",
        help="level names in Vietnamese, English or both",
    )
    _add_live(at)


def _add_tick(sub: Any) -> None:
    tick = sub.add_parser("tick", help="evaluate timer rules now (or at --at) on every internal partition")
    tick.add_argument("--at", help="ISO-8601 time with offset (default: now)")
    add_output(tick)


def _add_directive(sub: Any) -> None:
    directive = sub.add_parser(
        "directive",
        help="issue a directive about an alert through the workers' API, with your own token"
        " (STREAM_APP_API_TOKEN; STREAM_APP_API_URL)",
    )
    directive.add_argument(
        "--alert-key", required=True, help="the alert's key (its alert_key, as tail and the API show it)"
    )
    directive.add_argument(
        "--alert-id",
        default="",
        help=(
            "the alert change you saw (its alert_id): the occurrence the directive is about; without it,"
            " the occurrence current when it is issued (stale_alert if the alert fired again before)"
        ),
    )
    directive.add_argument("--action", required=True, choices=ACTIONS, help="what to do about the alert")
    directive.add_argument("--assignee", help="ASSIGN: who is to handle it")
    directive.add_argument("--comment", help="a note recorded with the directive")
    add_output(directive)


def _add_state(sub: Any) -> None:
    state = sub.add_parser("state", help="the Redis state: is it sound, rebuild it from the log")
    state_sub = state.add_subparsers(dest="state_action", required=True)
    status = state_sub.add_parser(
        "status", help="per stateful partition: log bounds, group position, applied mark (exit 1: lost)"
    )
    add_output(status)
    rebuild = state_sub.add_parser(
        "rebuild", help="replay the internal topic into the state (after Redis lost it), raise its marks"
    )
    rebuild.add_argument("--prefix", help="build under this key prefix instead (then switch the workers)")
    rebuild.add_argument("--force", action="store_true", help="rebuild even a sound state")
    add_progress(rebuild, "the records replayed")
    add_output(rebuild)
    adopt = state_sub.add_parser(
        "adopt",
        help="take a state built before applied marks existed (an upgrade) as the group's positions say; "
        "workers stopped",
    )
    add_output(adopt)


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="topics + worker + simulated feed, outputs printed live")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--rate", type=float, default=6.0, help="simulated records per second")
    demo.add_argument(
        "--worker-env",
        default=None,
        help="KEY=VALUE lines the worker runs with (its own principal: .local/secrets/stream-app.env)",
    )


def _add_reporter(sub: Any) -> None:
    reporter = sub.add_parser(
        "reporter",
        help="onboard a catalogue reporter on the running broker in one step (its topics, ACLs, quotas and "
        "SCRAM user), rotate its password or remove it; audited (as an admin)",
    )
    reporter.add_argument("action", choices=["add", "rotate", "remove"], help="what to do")
    reporter.add_argument("code", help="the reporter's catalogue code (e.g. MAE)")
    reporter.add_argument(
        "--dry-run", action="store_true", help="add, remove: print what would change, change nothing"
    )
    reporter.add_argument(
        "--delete-topics", action="store_true", help="remove: delete its topics too (kept by default)"
    )
    add_output(reporter)


def _add_monitoring(sub: Any) -> None:
    monitoring = sub.add_parser("monitoring", help="the Prometheus rules as a deployment installs them")
    monitoring_sub = monitoring.add_subparsers(dest="monitoring_action", required=True)
    render = monitoring_sub.add_parser(
        "render-rules",
        help="the alert rules with every runbook_url at STREAM_APP_RUNBOOK_URL (plus the alert's anchor)",
    )
    render.add_argument(
        "--rules",
        default=None,
        help="the rules file to render (default: deploy/prometheus/rules/stream-app.yml)",
    )
    render.add_argument("--out", default=None, help="write here instead of stdout")


def _add_group(sub: Any) -> None:
    group = sub.add_parser("group", help="consumer groups: move a group's positions (as an admin)")
    group_sub = group.add_subparsers(dest="group_action", required=True)
    reset = group_sub.add_parser(
        "reset", help="set GROUP's positions on a topic to a moment; a dry run unless --execute"
    )
    reset.add_argument(
        "group", help="the consumer group (the workers': STREAM_APP_APP_ID with the namespace)"
    )
    reset.add_argument("--topic", required=True, help="the topic whose positions move")
    reset.add_argument(
        "--to-datetime", required=True, help="ISO-8601 time with its offset: the first record at or after it"
    )
    reset.add_argument(
        "--execute", action="store_true", help="commit the positions (every consumer of the group stopped)"
    )
    add_output(reset)
