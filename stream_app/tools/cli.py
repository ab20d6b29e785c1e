"""stream-app: the national reporting stream processor (worker, topics, simulator, live tail, demo)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError

from stream_app.exceptions import ConfigurationError, RefusedError, StreamAppError, UsageError
from stream_app.exit_codes import ExitCode, for_error, plan_code, setting_errors
from stream_app.settings import Settings
from stream_app.tools.cli_parser import DLQ_STAGES, parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (:mod:`stream_app.exit_codes`)."""
    args = parser().parse_args(argv)
    try:
        return _dispatch(args, Settings())
    except BrokenPipeError:
        # the reader went away (`stream-app alerts tail | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except (StreamAppError, ValidationError, KeyboardInterrupt) as exc:
        return report_failure(args.command, exc)


def report_failure(command: str, exc: BaseException) -> int:
    """The one place a failure becomes an exit code: one line on stderr (none for Ctrl-C), no
    traceback; an exception it does not know is raised again (a bug shows its traceback)."""
    code = for_error(exc)
    if code is None:
        raise exc
    if isinstance(exc, ValidationError):
        prefix = str(Settings.model_config.get("env_prefix", ""))
        print(f"stream-app {command}: bad setting: {setting_errors(exc, prefix)}", file=sys.stderr)
    elif code is not ExitCode.INTERRUPTED:
        refused = "refused: " if isinstance(exc, RefusedError) else ""
        print(f"stream-app {command}: {refused}{exc}", file=sys.stderr)
    return code


def _emit(args: argparse.Namespace, payload: Any, lines: Iterable[str]) -> None:
    """Print a verb's outcome: ``lines`` for a person, or ``payload`` as one JSON document with
    ``--output json``."""
    if getattr(args, "output", "text") == "json":
        print(json.dumps(payload, indent=2, default=_plain, ensure_ascii=False))
        return
    for line in lines:
        print(line)


def _plain(value: Any) -> Any:
    """What JSON cannot hold as it is: dataclasses as objects, sets sorted, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handlers = {
        "worker": _worker,
        "screen": _screen,
        "demo": _demo,
        "topics": _topics,
        "simulate": _simulate,
        "produce": _produce,
        "tail": _tail,
        "dlq": _dlq,
        "acl": _acl,
        "quotas": _quotas,
        "token": _token,
        "alerts": _alerts,
        "tick": _tick,
        "directive": _directive,
        "schemas": _schemas,
        "state": _state,
        "reporter": _reporter,
        "group": _group,
        "monitoring": _monitoring,
    }
    return handlers[args.command](args, settings)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.pipeline.worker import run_worker

    return run_worker(settings)


def _screen(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.logs import configure_logging
    from stream_app.screen.server import run_screen

    configure_logging(settings)
    return run_screen(_blueprint(settings))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools.demo import run_demo

    return run_demo(settings, args.duration, args.rate, worker_env=args.worker_env)


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    if args.action == "register":
        from stream_app.kafka import subjects

        if args.dir:
            settings = settings.model_copy(update={"schemas_dir": Path(args.dir)})
        registered = subjects.register_from_settings(_blueprint(settings), args.registry, args.mode)
        _emit(args, registered, [*registered.lines, registered.summary()])
        return ExitCode.OK
    from stream_app.wire import schema_check

    checked = schema_check.check_schemas(Path(args.dir or settings.schemas_dir), schema_check.Mode(args.mode))
    payload = {
        "ok": checked.ok,
        "mode": checked.mode.value,
        "directory": checked.directory,
        "files": checked.files,
        "subjects": checked.subjects,
        "pairs": checked.pairs,
        "results": checked.lines,
    }
    _emit(args, payload, [*(str(line) for line in checked.lines), checked.summary()])
    return ExitCode.OK if checked.ok else ExitCode.FAILED


def _blueprint(settings: Settings) -> Any:
    from stream_app.config.blueprint import load_blueprint

    return load_blueprint(settings)


def _audit(blueprint: Any, action: str, subject: str, outcome: str, details: dict[str, str]) -> None:
    """Publish the audit record of one change this command made, acting as the CLI's Kafka principal."""
    from stream_app.api import audit

    audit.send_cli(blueprint, action, subject, outcome, details)


def _verb(args: argparse.Namespace) -> str:
    """How a ``plan`` or ``apply`` action speaks of its changes."""
    return "to change" if args.action == "plan" else "changed"


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.kafka import topics

    blueprint = _blueprint(settings)
    if args.action == "grow":
        from stream_app.tools.grow import grow

        if not args.topic or not args.partitions:
            raise UsageError("usage: stream-app topics grow TOPIC --partitions N")
        grown = grow(blueprint, args.topic, args.partitions)
        _emit(
            args,
            grown,
            [
                f"{grown.topic}: {grown.before} -> {grown.after} partitions; {grown.entities_moved} entities "
                "moved in the periods-due registry. Now declare partitions = "
                f"{grown.after} for it in topics.toml (STREAM_APP_TOPICS_FILE) and start the workers."
            ],
        )
        return ExitCode.OK
    if args.action == "list":
        listed = [
            {"name": t.name, "role": t.role, "partitions": t.partitions, "config": t.config}
            for t in blueprint.topics
        ]
        _emit(
            args,
            {"topics": listed},
            (f"{t['name']:<48} {t['role']:<12} partitions={t['partitions']} {t['config']}" for t in listed),
        )
        return ExitCode.OK
    changes = (topics.plan if args.action == "plan" else topics.apply)(settings, blueprint.topics)
    lines = [f"{c.action:<18} {c.topic:<48} {c.detail}" for c in changes]
    _emit(args, {"action": args.action, "changes": changes}, [*lines, f"{len(changes)} {_verb(args)}"])
    return plan_code(bool(changes)) if args.action == "plan" else ExitCode.OK


def _acl(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.kafka import acl

    def report(change: acl.AclPlan, verb: str) -> _Report:
        lines = [f"+ {grant}" for grant in change.create] + [f"- {grant}" for grant in change.delete]
        lines.append(f"{len(change.create)} to grant, {len(change.delete)} to revoke ({verb})")
        return _Report(
            lines,
            {"grant": change.create, "revoke": change.delete},
            {"granted": str(len(change.create)), "revoked": str(len(change.delete))},
        )

    return _cluster_setting(args, settings, acl, acl.grants, report, audit_action="acl_apply")


def _quotas(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.kafka import quotas

    def report(change: quotas.QuotaPlan, verb: str) -> _Report:
        lines = []
        for quota in change.to_set:
            before = change.before(quota)
            lines.append(f"~ {quota}  (was {'none' if before is None else f'{before:,g}'})")
        lines.append(f"{len(change.to_set)} quota(s) {verb}")
        payload = {"set": [{**dataclasses.asdict(q), "before": change.before(q)} for q in change.to_set]}
        return _Report(lines, payload, {"set": str(len(change.to_set))})

    return _cluster_setting(args, settings, quotas, quotas.quotas, report, audit_action="quotas_apply")


@dataclasses.dataclass(frozen=True, slots=True)
class _Report:
    """A plan's or an apply's outcome: lines for a person, a JSON payload, the audit record's details."""

    lines: list[str]
    payload: dict[str, Any]
    details: dict[str, str]


class _Plan(Protocol):
    """What ``plan`` and ``apply`` of a setting the CLI manages on the cluster return."""

    @property
    def empty(self) -> bool: ...


_PlanT = TypeVar("_PlanT", bound=_Plan)
_PlanT_co = TypeVar("_PlanT_co", bound=_Plan, covariant=True)


class _Managed(Protocol[_PlanT_co]):
    """A module managing one setting on the cluster (``stream_app.kafka.acl``, ``.quotas``)."""

    def plan(self, blueprint: Any, /) -> _PlanT_co: ...
    def apply(self, blueprint: Any, /) -> _PlanT_co: ...


def _cluster_setting(
    args: argparse.Namespace,
    settings: Settings,
    managed: _Managed[_PlanT],
    wanted: Callable[[Any], Iterable[Any]],
    report: Callable[[_PlanT, str], _Report],
    *,
    audit_action: str,
) -> int:
    """``list``, ``plan`` or ``apply`` of a setting the CLI manages on the cluster (ACLs, quotas): the
    ``wanted`` entries one a line, or the changes ``managed`` plans or makes, as ``report`` tells them
    (with their counts for the audit record, published when ``apply`` changed something). ``plan``
    exits 2 when something would change."""
    blueprint = _blueprint(settings)
    if args.action == "list":
        entries = sorted(wanted(blueprint))
        _emit(args, {"wanted": entries}, (str(entry) for entry in entries))
        return ExitCode.OK
    change = (managed.plan if args.action == "plan" else managed.apply)(blueprint)
    told = report(change, _verb(args))
    _emit(args, {"action": args.action, **told.payload}, told.lines)
    if args.action == "apply" and not change.empty:
        _audit(blueprint, audit_action, "cluster", "applied", told.details)
    return plan_code(not change.empty) if args.action == "plan" else ExitCode.OK


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stream_app.api.auth import create_token

    path = Path(args.file) if args.file else settings.api_tokens_file
    if path is None:
        raise UsageError("give --file, or set STREAM_APP_API_TOKENS_FILE")
    token = create_token(path, args.name, args.role)
    _emit(args, {"token": token, "name": args.name, "role": args.role, "file": path}, [token])
    print(f"token for {args.name} ({args.role}) added to {path}; it is shown only now", file=sys.stderr)
    return ExitCode.OK


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stream_app.domain.catalogue import load_catalogue
    from stream_app.tools import simulate

    return simulate.main(
        settings,
        load_catalogue(settings.catalogue_dir),
        history_span=args.history,
        out=Path(args.out) if args.out else None,
        fmt=args.format,
        reporters=args.reporter,
        scenario=args.scenario,
        rate=args.rate,
        duration=args.duration,
        count=args.count,
        seed=args.seed,
        invalid_share=args.invalid_share,
    )


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stream_app.domain.catalogue import load_catalogue
    from stream_app.tools import produce

    return produce.produce_file(
        settings,
        catalogue=load_catalogue(settings.catalogue_dir),
        reporter=args.reporter,
        path=Path(args.file),
        fmt=args.format,
        batch=args.batch,
        progress=args.progress,
        dry_run=args.dry_run,
        workers=args.workers,
        bulk=args.bulk,
    )


def _print_live(args: argparse.Namespace, settings: Settings, outputs: dict[str, str], **options: Any) -> int:
    """Print the records of ``outputs`` ({topic: subject}) readably, for ``--duration`` or until Ctrl-C."""
    import time

    from stream_app.logs import colour_allowed
    from stream_app.tools import tail

    started = time.monotonic()
    tail.follow(
        settings,
        _blueprint(settings).schemas,
        outputs,
        lambda _s, line: print(line, flush=True),
        stop=lambda: args.duration is not None and time.monotonic() - started > args.duration,
        from_beginning=args.from_beginning,
        colour=colour_allowed(sys.stdout),
        **options,
    )
    return ExitCode.OK


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    blueprint = _blueprint(settings)
    outputs = {
        blueprint.topic_by_role("alerts").name: "alert",
        blueprint.topic_by_role("consolidated").name: "consolidated",
    }
    return _print_live(args, settings, outputs)


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools import dlq

    blueprint = _blueprint(settings)
    if args.dlq_action == "inspect":
        chosen = not (args.reporter or args.stage)
        sources = [dlq.reporter_source(blueprint, r) for r in (args.reporter or [])]
        sources += [dlq.stage_source(blueprint, s) for s in (args.stage or [])]
        if chosen:
            sources = [dlq.reporter_source(blueprint, r) for r in sorted(blueprint.catalogue.reporters)]
            sources += [dlq.stage_source(blueprint, s) for s in DLQ_STAGES]
        rows = []
        for source in sources:
            rows.extend(dlq.summarise(source.label, list(dlq.read_all(blueprint, source.topic))))
        total = sum(r.count for r in rows)
        _emit(
            args,
            {"dead_letters": total, "by_reason": rows},
            [*dlq.format_summary(rows), f"{total} dead letters"],
        )
        return ExitCode.OK
    reasons = set(args.reason or [])
    positions = {_position(o) for o in args.offset or []}

    def select(letter: Any) -> bool:
        return (not reasons or letter.record["reason"] in reasons) and (
            not positions or (letter.partition, letter.offset) in positions
        )

    source = (
        dlq.reporter_source(blueprint, args.reporter)
        if args.reporter
        else dlq.stage_source(blueprint, args.stage)
    )
    selected, sent = dlq.replay(blueprint, source, select, dry_run=args.dry_run)
    if not args.dry_run and selected:
        _audit(
            blueprint,
            "dlq_replay",
            source.topic,
            "applied" if sent == selected else "partial",
            {"selected": str(selected), "sent": str(sent), "reasons": ",".join(sorted(reasons)) or "*"},
        )
    verb = "would replay" if args.dry_run else "replayed"
    count = sent if not args.dry_run else selected
    _emit(
        args,
        {"source": source.topic, "replay_to": source.replay_to, "dry_run": args.dry_run, "selected": selected}
        | {"sent": 0 if args.dry_run else sent},
        [f"{verb} {count} of {selected} selected dead letters to {source.replay_to}"],
    )
    return ExitCode.OK if args.dry_run or sent == selected else ExitCode.FAILED


def _position(text: str) -> tuple[int, int]:
    """``--offset PARTITION:OFFSET``."""
    partition, _, offset = text.partition(":")
    try:
        return int(partition), int(offset)
    except ValueError:
        raise UsageError(f"--offset {text!r}: give PARTITION:OFFSET (e.g. 0:42)") from None


def _alerts(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools import tail

    blueprint = _blueprint(settings)
    topic = tail.alerts_topic(blueprint, args.domain)  # an unknown domain: a usage error, before connecting
    return _print_live(args, settings, {topic: "alert"}, lang=args.lang, min_level=args.min_level)


def _tick(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime

    from stream_app.tools import control

    at_ms = None
    if args.at:
        try:
            moment = datetime.fromisoformat(args.at)
        except ValueError:
            raise UsageError(f"--at {args.at!r} is no ISO-8601 time") from None
        if moment.tzinfo is None:
            raise UsageError(f"--at {args.at!r}: give the time with its offset (e.g. +07:00)")
        at_ms = int(moment.timestamp() * 1000)
        latest = int((time.time() + settings.tick_max_future_s) * 1000)
        if at_ms > latest:
            raise UsageError(
                f"--at {args.at!r} is further ahead than STREAM_APP_TICK_MAX_FUTURE_S "
                f"({settings.tick_max_future_s:g} s): workers would dead-letter it as tick_invalid"
            )
    sent = control.send_ticks(_blueprint(settings), at_ms, source="cli")
    _emit(args, {"ticks": sent, "at_ms": at_ms}, [f"sent {sent} ticks"])
    return ExitCode.OK


def _directive(args: argparse.Namespace, settings: Settings) -> int:
    """The directive goes to the workers' API, which names the token's person and audits it; printed:
    what the API answered (202 with the directive's id, or the refusal and its reason)."""
    from stream_app.tools import control

    answer = control.post_directive(
        settings,
        alert_key=args.alert_key,
        alert_id=args.alert_id,
        action=args.action,
        assignee=args.assignee,
        comment=args.comment,
    )
    if args.output == "json":
        _emit(args, {"accepted": answer.accepted, "status": answer.status, "answer": answer.body}, [])
    elif answer.accepted:
        print(f"sent directive {answer.body.get('directive_id')} as {answer.body.get('actor')}")
    if answer.accepted:
        return ExitCode.OK
    reason = answer.body.get("reason") or answer.body.get("error") or "refused"
    print(f"refused ({answer.status} {reason}): {answer.body.get('detail', '')}", file=sys.stderr)
    return ExitCode.FAILED


def _state(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.tools import state

    blueprint = _blueprint(settings)
    if args.state_action == "status":
        rows = state.status(blueprint)
        lost = [row for row in rows if row.problem is not None]
        partitions = [{**dataclasses.asdict(row), "problem": row.problem} for row in rows]
        _emit(
            args, {"sound": not lost, "lost": len(lost), "partitions": partitions}, state.status_lines(rows)
        )
        return ExitCode.FAILED if lost else ExitCode.OK
    if args.state_action == "adopt":
        marks = state.adopt(blueprint)
        _emit(args, {"marks": marks}, [f"state adopted: applied marks set to the group's positions {marks}"])
        return ExitCode.OK
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    report = state.rebuild(blueprint, prefix=args.prefix, force=args.force, progress=progress)
    lines = [
        f"state rebuilt under {report.prefix!r}: {report.records:,} records in {report.seconds:.1f} s "
        f"({report.rate:,.0f}/s), {report.entities:,} entities, {report.contributions:,} roll-up "
        f"contributions; marks {report.marks}"
    ]
    if report.prefix != settings.redis_key_prefix:
        lines.append(
            f"to switch: set STREAM_APP_REDIS_KEY_PREFIX={report.prefix} for every worker and restart them "
            "(all stopped first: the log moves on while the new prefix is built; then rebuild once more "
            "with --force into it, or start them and let the guard say what it lacks)"
        )
    _emit(args, {**dataclasses.asdict(report), "rate": report.rate}, lines)
    return ExitCode.OK


def _reporter(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.logs import configure_logging
    from stream_app.tools import reporter

    configure_logging(settings)  # the audit's log line on stderr: stdout is the outcome's (JSON)

    return reporter.run(
        _blueprint(settings),
        args.action,
        args.code,
        output=args.output,
        dry_run=args.dry_run,
        delete_topics=args.delete_topics,
    )


def _group(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.logs import configure_logging
    from stream_app.tools import group

    configure_logging(settings)  # the audit's log line on stderr: stdout is the outcome's (JSON)

    return group.run(
        _blueprint(settings),
        args.group,
        args.topic,
        args.to_datetime,
        execute_it=args.execute,
        output=args.output,
    )


def _monitoring(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from stream_app.ops.rules import render_rules
    from stream_app.settings import REPO_ROOT

    source = (
        Path(args.rules) if args.rules else REPO_ROOT / "deploy" / "prometheus" / "rules" / "stream-app.yml"
    )
    try:
        rules = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the rules file {source}: {exc.strerror} (--rules FILE)"
        ) from exc
    rendered = render_rules(rules, settings.runbook_url)
    if args.out:
        Path(args.out).write_text(rendered, encoding="utf-8")
    else:
        sys.stdout.write(rendered)
    return ExitCode.OK
