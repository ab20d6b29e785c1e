"""The consolidate stage's output: what an entity's run publishes and writes (alerts, forwarded
directives, consolidated records, index writes, its serialised commit), the batch's roll-up
contributions (built by :func:`stream_app.domain.rollup.contribution_records`), the dead letters of
the records the final runs refused (not poison), and the stage's metrics and alert log lines.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from stream_app.agents._consolidate_input import (
    STAGE,
    Cause,
    DirectiveItem,
    EntityCharges,
    Item,
    ObservationItem,
)
from stream_app.config.blueprint import Blueprint
from stream_app.domain.alerting import RuleBook
from stream_app.domain.consolidation import contributions, entity_records
from stream_app.domain.entity import (
    Context,
    DirectiveRefusedError,
    EntityKey,
    EntityState,
    Outcome,
    StepResult,
    Touched,
)
from stream_app.domain.model import Observation, Rejection
from stream_app.domain.reasons import Reason
from stream_app.domain.records import AlertRecord
from stream_app.domain.rollup import Contributed, contribution_records, contribution_seq
from stream_app.kafka.dead_letters import Letter, dead_letter
from stream_app.kafka.lanes import Message
from stream_app.kafka.partitioning import partition_for
from stream_app.kafka.publisher import Output, Publisher
from stream_app.logs import get_logger
from stream_app.ops import metrics
from stream_app.state.store import (
    ActiveAlert,
    Commit,
    DueAt,
    IndexWrite,
    PreparedCommit,
    ReporterSent,
    StateLayer,
)
from stream_app.wire import codecs

log = get_logger(__name__)


@dataclass(slots=True)
class EntityRun:
    """One entity's records applied in order from its state as read, and what that produced."""

    state: EntityState
    touched: Touched = field(default_factory=Touched)
    results: list[tuple[Item, StepResult | DirectiveRefusedError]] = field(default_factory=list)
    commit: Commit | None = None
    top_offset: int = -1  # the highest offset of the entity's records in the batch, charged or not
    base: dict[bytes, bytes] = field(default_factory=dict)  # the state hash it ran from, raw, as read


@dataclass(slots=True)
class Built:
    """What an entity's run publishes and writes, built before anything is sent."""

    outputs: list[Output[Cause]] = field(default_factory=list)
    indexes: list[IndexWrite] = field(default_factory=list)
    contributions: list[tuple[str, str | None]] = field(default_factory=list)
    prepared: PreparedCommit | None = None
    consolidated: Counter[str] = field(default_factory=Counter)  # records by kind, for the metric


class Outputs:
    """Builds the consolidate stage's outputs and dead letters."""

    def __init__(
        self, blueprint: Blueprint, store: StateLayer, rulebook: RuleBook, publisher: Publisher
    ) -> None:
        self.catalogue = blueprint.catalogue
        self.rulebook = rulebook
        self.store = store
        self.publisher = publisher
        self.partitions = blueprint.topic_by_role("repartition").partitions
        self.alerts = blueprint.topic_by_role("alerts").name
        self.active = blueprint.topic_by_role("active_alerts").name
        self.consolidated = blueprint.topic_by_role("consolidated").name
        rollups = blueprint.topic_by_role("rollup")
        self.rollups, self.rollup_partitions = rollups.name, rollups.partitions
        self.domain_topics = {
            t.domain: t.name for t in blueprint.topics if t.role == "domain_alerts" and t.domain
        }
        self.reporter_directives = {
            t.reporter: t.name for t in blueprint.topics if t.role == "reporter_directives" and t.reporter
        }
        self.dead_letters = {
            t.reporter: t.name for t in blueprint.topics if t.role == "dead_letter" and t.reporter
        }
        self.directive_dead_letters = blueprint.topic_by_role("directives_dead_letter").name
        self.schemas = {
            name: blueprint.schemas.latest(name) for name in ("alert", "consolidated", "contribution")
        }

    def build(self, entity: str, run: EntityRun, now: int, charges: EntityCharges) -> Built | None:
        """The entity's outputs, index writes, contributions and serialised commit, all checked before
        anything is sent; None when that failed (what caused it is charged)."""
        built = Built()
        try:
            for item, result in run.results:
                self._record_outputs(entity, item, result, built)
            if run.commit is not None:
                self._aggregate_outputs(run, entity, now, built)
                built.prepared = self.store.prepare(run.commit)
        except Exception as exc:
            charges.entity(entity, Reason.OUTPUT_FAILED, exc, repr(exc))
            return None
        oversized = [o for o in built.outputs if o.size > self.publisher.max_bytes]
        for output in oversized:
            detail = f"an output of {output.size} bytes to {output.topic} exceeds {self.publisher.max_bytes}"
            charges.output(output.blame, Reason.OUTPUT_TOO_LARGE, ValueError(detail), detail)
        return None if oversized else built

    def _record_outputs(
        self, entity: str, item: Item, result: StepResult | DirectiveRefusedError, built: Built
    ) -> None:
        if isinstance(result, DirectiveRefusedError) or result.skipped:
            return
        cause = Cause(frozenset((entity,)), item.index)
        self._alerts(built, result, cause)
        if isinstance(item, DirectiveItem):
            # The ministry responsible now receives the directive on its own topic, and only it.
            topic = self.reporter_directives.get(result.addressee)
            if topic is not None:
                key = str(item.directive["alert_key"]).encode()
                built.outputs.append(Output(topic, key, item.message.value or b"", blame=cause))

    def _aggregate_outputs(self, run: EntityRun, entity: str, now: int, built: Built) -> None:
        """An entity's consolidated records, once per key, its contributions and its index writes."""
        state, touched = run.state, run.touched
        cause = Cause(frozenset((entity,)))
        ctx = Context(self.catalogue, self.rulebook, now)
        for record_key, record in entity_records(state, EntityKey.parse(entity), touched, ctx):
            value = None if record is None else codecs.encode(self.schemas["consolidated"], record)
            built.outputs.append(Output(self.consolidated, record_key.encode(), value, blame=cause))
            built.consolidated["tombstone" if record is None else record["kind"].lower()] += 1
        built.contributions = contributions(state, touched)
        # the periods-due registry: the earliest deadline of the entity's open periods
        deadline = min(state.open_periods.values()) if state.open_periods else None
        built.indexes.append(DueAt(partition_for(entity, self.partitions), entity, deadline))
        built.indexes.extend(ReporterSent(reporter, entity) for reporter in sorted(touched.reporters))

    def _alerts(self, built: Built, result: StepResult, cause: Cause) -> None:
        for alert in result.alerts:
            encoded = codecs.encode(self.schemas["alert"], alert)
            key = alert["alert_key"].encode()
            built.outputs.append(Output(self.alerts, key, encoded, blame=cause, record=alert))
            domain_topic = self.domain_topics.get(alert["domain"])
            if domain_topic is not None:
                built.outputs.append(Output(domain_topic, key, encoded, blame=cause))
            # The compacted active-alerts topic: the current record of an open alert, a tombstone
            # once it is resolved, so a new subscriber rebuilds the live picture from it. The query
            # API reads the same picture from a Redis hash.
            resolved = alert["event_type"] == "TRANSITION" and alert["transition"] == "RESOLVED"
            built.outputs.append(Output(self.active, key, None if resolved else encoded, blame=cause))
            record_json = None if resolved else json.dumps(alert, default=str)
            built.indexes.append(ActiveAlert(alert["alert_key"], record_json))

    def rollup_outputs(
        self, runs: dict[str, EntityRun], built: dict[str, Built], now: int, attempt: int
    ) -> list[Output[Cause]]:
        """Roll-up contributions: one record per roll-up and batch, split where it would not fit; each
        blamed on the entities it carries. Their sequence (:func:`contribution_seq`) grows with each
        publishing attempt: a batch run again supersedes what its abandoned run contributed."""
        contributed = {
            entity: Contributed(
                contribution_seq(runs[entity].top_offset, attempt), built[entity].contributions
            )
            for entity in built
        }
        budget = self.publisher.max_bytes - 1024
        return [
            Output(
                self.rollups,
                c.routing.encode(),
                codecs.encode(self.schemas["contribution"], c.record),
                partition=partition_for(c.routing, self.rollup_partitions),
                blame=Cause(c.sources),
            )
            for c in contribution_records(self.catalogue.indicators, contributed, now, budget)
        ]

    def rejection_letters(self, runs: dict[str, EntityRun], now: int) -> list[Letter]:
        """Records the final runs refused (not poison): stale or too old observations, to their
        reporter's dead-letter topic; directives about no open alert, to the directives' one."""
        letters = []
        for run in runs.values():
            for item, result in run.results:
                if isinstance(result, DirectiveRefusedError):
                    letters.append(
                        dead_letter(
                            item.message,
                            self.directive_dead_letters,
                            Rejection(result.reason, str(result)),
                            now_ms=now,
                            stage=STAGE,
                            reporter="CENTER",
                        )
                    )
                elif isinstance(item, ObservationItem) and result.refused:
                    obs = item.observation
                    letters.append(
                        dead_letter(
                            item.message,
                            self.dead_letters[obs.reporter],
                            _refusal(obs, result),
                            now_ms=now,
                            stage=STAGE,
                            reporter=obs.reporter,
                        )
                    )
        return letters


def count(runs: dict[str, EntityRun], built: dict[str, Built], *, replay: bool) -> None:
    """Count what the final runs did, once, after their outputs were published."""
    for entity, run in runs.items():
        metrics.PERIODS_CLOSED.inc(len(run.touched.closed))
        for kind, counted in built[entity].consolidated.items():
            metrics.CONSOLIDATED_EVENTS.labels(kind).inc(counted)
        for item, result in run.results:
            if isinstance(result, DirectiveRefusedError):
                continue
            if isinstance(item, ObservationItem):
                _count_observation(item.observation, result)
            if not result.skipped and not replay:
                _log_alerts(result.alerts, item.message)


def _log_alerts(alerts: Iterable[AlertRecord], message: Message) -> None:
    for alert in alerts:
        if alert["event_type"] == "TRANSITION":
            metrics.ALERTS_EMITTED.labels(alert["transition"]).inc()
        log.info(
            "alert",
            alert_id=alert["alert_id"],
            event_type=alert["event_type"],
            transition=alert["transition"],
            rule=alert["rule"],
            indicator=alert["indicator"],
            region=alert["region"],
            station=alert["station"],
            alert_level=alert["level_code"],
            value=alert["value"],
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )


def _refusal(obs: Observation, result: StepResult) -> Rejection:
    if result.outcome is Outcome.STALE:
        return Rejection(
            Reason.STALE_REVISION,
            f"revision {obs.revision} of {obs.observation_id} arrived after a later revision",
        )
    return Rejection(
        Reason.BEYOND_RETENTION,
        f"{obs.observation_id} is older than the previous reporting year of the newest value "
        "of its entity: neither a duplicate nor a correction can be recognised there",
    )


def _count_observation(obs: Observation, result: StepResult) -> None:
    if result.outcome is Outcome.ALREADY_APPLIED:
        metrics.OBSERVATIONS_SKIPPED.inc()
    elif result.outcome is Outcome.DUPLICATE:
        metrics.DUPLICATES.inc()
    elif not result.skipped:
        if result.outcome is Outcome.CORRECTED:
            metrics.REVISIONS.inc()
        if result.late:
            metrics.LATE_OBSERVATIONS.labels(obs.reporter).inc()
