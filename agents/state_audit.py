"""State audit: every ``STREAM_APP_STATE_AUDIT_S`` each worker checks the Redis state of the stateful
partitions it owns against Kafka (:class:`stream_app.state.guard.StateAudit`), so a state lost while no
record arrives — Redis restarted from an old snapshot, keys gone, a failover to a lagging replica — makes
the worker not ready (``state_lost``) at once, not when the next record meets it."""

from __future__ import annotations

import faust

from stream_app.agents._batch import committed_offsets, earliest_offsets
from stream_app.config.blueprint import Blueprint
from stream_app.ops import retry
from stream_app.state.guard import Partition, StateAudit
from stream_app.state.store import StateLayer


def register(app: faust.App, blueprint: Blueprint, store: StateLayer) -> StateAudit:
    """The audit's timer; returns the audit (its ``run_once`` never raises)."""
    stages = {
        blueprint.topic_by_role("repartition").name: "consolidate",
        blueprint.topic_by_role("rollup").name: "rollup",
    }

    def assigned() -> list[Partition]:
        return sorted((tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in stages)

    audit = StateAudit(
        store,
        blueprint.settings,
        assigned=assigned,
        committed=committed_offsets(app),
        earliest=earliest_offsets(app),
        stage_of=lambda topic: stages.get(topic, topic),
    )

    # run_once never raises; guarded all the same, as every timer (an escaping exception ends the worker)
    app.timer(blueprint.settings.state_audit_s)(retry.guarded("state_audit", audit.run_once))
    return audit
