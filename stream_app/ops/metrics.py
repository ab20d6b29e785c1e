"""Prometheus metrics, defined once. Labels are bounded: topic, reporter, reason, kind — never ids."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from stream_app.domain import reasons
from stream_app.domain.reasons import Reason
from stream_app.ops.threads import ThreadCpuCollector

# `_created` series double the exposition size and no dashboard or alert uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_CONSUMED = Counter(
    "stream_app_records_consumed_total",
    "Records read from Kafka, by topic.",
    ["topic"],
    registry=REGISTRY,
)
RECORDS_ACCEPTED = Counter(
    "stream_app_records_accepted_total",
    "Observations that passed validation, by reporter.",
    ["reporter"],
    registry=REGISTRY,
)
RECORDS_REJECTED = Counter(
    "stream_app_records_rejected_total",
    "Records sent to a dead-letter topic, by reporter and reason code.",
    ["reporter", "reason"],
    registry=REGISTRY,
)
RECORDS_PRODUCED = Counter(
    "stream_app_records_produced_total",
    "Records written to Kafka, by topic.",
    ["topic"],
    registry=REGISTRY,
)
OBSERVATIONS_SKIPPED = Counter(
    "stream_app_observations_skipped_total",
    "Observations not applied again because Redis already holds their effects (redelivery).",
    registry=REGISTRY,
)
COMMITS_FENCED = Counter(
    "stream_app_state_commits_fenced_total",
    "Entity commits Redis refused because the state already holds their input offset or a later one: "
    "a batch applied again after a crash, or a paused worker (a zombie) whose partition moved on.",
    registry=REGISTRY,
)
BATCHES_FENCED = Counter(
    "stream_app_batches_fenced_total",
    "Batches a stateful stage dropped unpublished and unacknowledged because another worker applied "
    "records of their partitions since they were admitted (this worker was paused past its session "
    "timeout: a zombie).",
    ["stage"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "stream_app_duplicate_observations_total",
    "Observations ignored because the same id and revision was already applied.",
    registry=REGISTRY,
)
ALERTS_EMITTED = Counter(
    "stream_app_alerts_emitted_total",
    "Alert transitions published, by transition.",
    ["transition"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "stream_app_retries_total",
    "Failed infrastructure operations that were retried while the partition waited, by operation.",
    ["operation"],
    registry=REGISTRY,
)
REDIS_APPLY_SECONDS = Histogram(
    "stream_app_redis_apply_seconds",
    "Time to read and commit one batch's state in Redis.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
BULK_HELD = Gauge(
    "stream_app_bulk_held",
    "1 while the bulk intake waits for the stateful step to catch up (history queues in Kafka, not ahead"
    " of live alerts)",
    registry=REGISTRY,
)
BULK_WAIT = Counter(
    "stream_app_bulk_wait_seconds_total",
    "Time the bulk intake spent waiting for the stateful step to catch up",
    registry=REGISTRY,
)
LIVE_HELD = Gauge(
    "stream_app_live_held",
    "1 while the live intake waits for the stateful step to catch up (STREAM_APP_LIVE_MAX_AHEAD)",
    registry=REGISTRY,
)
LIVE_WAIT = Counter(
    "stream_app_live_wait_seconds_total",
    "Time the live intake spent waiting for the stateful step to catch up (STREAM_APP_LIVE_MAX_AHEAD): "
    "a reporter's flood queues in its own topic, shared fairly with the others, not on the internal one",
    registry=REGISTRY,
)
OWNED_STATE_LOOKUPS = Counter(
    "stream_app_owned_state_lookups_total",
    "A stateful stage's look-ups of what it wrote of its own partitions (stream_app/state/owned.py): a"
    " hit is a read of Redis (and its decoding) saved",
    ["stage", "result"],
)
OWNED_STATE_DROPPED = Counter(
    "stream_app_owned_state_dropped_total",
    "Entries a stateful stage forgot of what it wrote, by why: mark (its partition's mark is not the"
    " one it wrote last: another owner, a state lost or rebuilt), epoch, age, size, lost, failed (a"
    " commit refused or unconfirmed), stale (a commit that wrote nothing), fenced",
    ["stage", "reason"],
)
STAGE_SECONDS = Histogram(
    "stream_app_stage_batch_seconds",
    "Time a stage spent on each batch, from taking it to acking it (its busy time: the sum over the wall)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "stream_app_batch_size",
    "Records per processed batch, by agent.",
    ["agent"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "stream_app_end_to_end_latency_seconds",
    "From the input record's Kafka timestamp to its outputs being acknowledged by Kafka.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
RETRYING = Gauge(
    "stream_app_retrying",
    "1 while an operation (redis_load, redis_commit, produce, schema_registry) waits for its dependency.",
    ["operation"],
    registry=REGISTRY,
)
STATEFUL_STAGES = ("consolidate", "rollup")  # the stages the state guard holds (stream_app.state.guard)
STATE_LOST = Gauge(
    "stream_app_state_lost",
    "1 while a stateful stage (consolidate, rollup) refuses to apply: Redis no longer holds records the "
    "consumer group acknowledged (a reset, a flush, lost writes). Cleared by `stream-app state rebuild`.",
    ["stage"],
    registry=REGISTRY,
)

# --- operating the workers (issue 6): feeds, lag, health, rebalances, the Alertmanager bridge ----------

# Operations that retry_until_done() may wait on; their series exist from start-up (at 0), so a
# dashboard or an alert rule never has to tell "no retry yet" from "no such worker".
RETRY_OPERATIONS = (
    "redis_checkpoint",
    "redis_load",
    "redis_commit",
    "redis_rollup",
    "produce",
    "schema_registry",
    "state_lost",
    "kafka_offsets",
    "redis_briefing",  # the briefing timer waiting for its marker, its figures or to set the marker
    "kafka_alert_bridge",  # the alert bridge's reader waiting for the broker
)

EVENT_AGE_SECONDS = Histogram(
    "stream_app_event_age_seconds",
    "From an observation's event time to its acceptance by the intake (the reporter's delay plus "
    "the processor's), by reporter.",
    ["reporter"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 3 * 3600, 12 * 3600, 86400, 7 * 86400, 40 * 86400),
    registry=REGISTRY,
)
REPORTER_LAST_ACCEPTED = Gauge(
    "stream_app_reporter_last_accepted_timestamp_seconds",
    "Wall-clock time this worker last accepted an observation from the reporter's feed; "
    "silence = time() - max by (reporter).",
    ["reporter"],
    registry=REGISTRY,
)
REPORTER_FEED_INTERVAL = Gauge(
    "stream_app_reporter_feed_interval_seconds",
    "Longest silence allowed of a reporter's live feed, from the catalogue's absence rules; "
    "only reporters with a live feed have one.",
    ["reporter"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "stream_app_consumer_lag_records",
    "Records in a partition this worker owns that it has not committed yet (high watermark minus "
    "committed offset), by topic and partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
ASSIGNED_PARTITIONS = Gauge(
    "stream_app_assigned_partitions",
    "Partitions assigned to this worker, by topic.",
    ["topic"],
    registry=REGISTRY,
)
REBALANCES = Counter(
    "stream_app_rebalances_total",
    "Consumer group rebalances this worker went through.",
    registry=REGISTRY,
)
REBALANCE_SECONDS = Histogram(
    "stream_app_rebalance_seconds",
    "Duration of a consumer group rebalance, from revocation to the new assignment being served.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
REBALANCING = Gauge(
    "stream_app_rebalancing",
    "1 while the worker's consumer group is rebalancing.",
    registry=REGISTRY,
)
WORKER_READY = Gauge(
    "stream_app_worker_ready",
    "1 when the worker is ready (GET /readyz answers 200): partitions assigned, Kafka and Redis "
    "reachable, nothing waiting for a dependency.",
    registry=REGISTRY,
)
WORKER_INFO = Gauge(
    "stream_app_worker_info",
    "Always 1; labels say which app (consumer group) and version the worker runs.",
    ["app_id", "version"],
    registry=REGISTRY,
)
DEPENDENCY_UP = Gauge(
    "stream_app_dependency_up",
    "1 when the last reachability probe of a dependency (kafka, redis) succeeded.",
    ["dependency"],
    registry=REGISTRY,
)
EVENT_LOOP_LAG_SECONDS = Gauge(
    "stream_app_event_loop_lag_seconds",
    "How late the worker's one-second heartbeat last woke up: a busy or blocked event loop.",
    registry=REGISTRY,
)
ALERT_TRANSITIONS = Counter(
    "stream_app_alert_transitions_total",
    "Alert transitions published to the center, by domain, rule kind and transition.",
    ["domain", "rule_kind", "transition"],
    registry=REGISTRY,
)
ALERTMANAGER_POSTS = Counter(
    "stream_app_alertmanager_posts_total",
    "Batches of center alerts posted to Alertmanager, by outcome (ok; error: 5xx or no answer, retried "
    "with backoff; refused: a 4xx, logged and not retried).",
    ["outcome"],
    registry=REGISTRY,
)
ALERTMANAGER_ACTIVE = Gauge(
    "stream_app_alertmanager_active_alerts",
    "Open center alerts the bridge keeps active in Alertmanager.",
    registry=REGISTRY,
)
ALERTMANAGER_PENDING = Gauge(
    "stream_app_alertmanager_pending_alerts",
    "Alerts waiting to be posted to Alertmanager (one per alert: its newest state).",
    registry=REGISTRY,
)
ALERTMANAGER_DROPPED = Counter(
    "stream_app_alertmanager_dropped_total",
    "Alert posts never sent to Alertmanager, by reason: superseded (a newer state of the same alert "
    "replaced it while waiting), overflow (STREAM_APP_ALERTMANAGER_MAX_PENDING reached: the oldest went; "
    "an open alert comes back with the next re-send), refused (Alertmanager answered 4xx for it).",
    ["reason"],
    registry=REGISTRY,
)
SCHEMA_LOOKUPS = Counter(
    "stream_app_schema_registry_lookups_total",
    "Confluent schema ids met in a batch and not yet known, by outcome: resolved, unknown (the registry "
    "has no such id), refused (schema_mismatch or schema_not_allowed), skipped (not asked: over "
    "STREAM_APP_SCHEMA_REGISTRY_MAX_LOOKUPS_PER_BATCH; its records are dead-lettered, schema_not_looked_up).",
    ["outcome"],
    registry=REGISTRY,
)
# process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, process_start_time_seconds
ProcessCollector(registry=REGISTRY)
REGISTRY.register(ThreadCpuCollector())  # stream_app_thread_cpu_seconds_total{thread}

# --- aggregates and consolidated events (issue 5) -----------------------------------------------
REVISIONS = Counter(
    "stream_app_revisions_total",
    "Corrections applied: an observation id at a higher revision, its earlier value retracted first.",
    registry=REGISTRY,
)
LATE_OBSERVATIONS = Counter(
    "stream_app_late_observations_total",
    "Observations for a reporting period already closed (past its deadline) when they arrived, by reporter.",
    ["reporter"],
    registry=REGISTRY,
)
CONSOLIDATED_EVENTS = Counter(
    "stream_app_consolidated_events_total",
    "Consolidated records published, by kind (update, late_update, period_close, rollup, briefing).",
    ["kind"],
    registry=REGISTRY,
)
PERIODS_CLOSED = Counter(
    "stream_app_periods_closed_total",
    "Reporting periods closed at their deadline (by a tick or a later record); their final values published.",
    registry=REGISTRY,
)

# --- poison isolation (issue 11) ----------------------------------------------------------------
POISON_RECORDS = Counter(
    "stream_app_poison_records_total",
    "Records dead-lettered because processing them failed in a way retrying cannot cure (a step "
    "exception, an output Kafka refuses, unreadable state, a forged internal record), by stage "
    "(intake, directives, consolidate, rollup) and reason. Validation rejections are not counted here.",
    ["stage", "reason"],
    registry=REGISTRY,
)
AGENT_CRASHES = Counter(
    "stream_app_agent_crashes_total",
    "Batches whose handler raised instead of dead-lettering (a defect): the batch's acks are withheld "
    "and Faust restarts the agent, by agent.",
    ["agent"],
    registry=REGISTRY,
)
# --- hostile reporters, second round (issue 25) -------------------------------------------------
FETCH_BATCHES_WITHHELD = Counter(
    "stream_app_fetch_batches_withheld_total",
    "Fetched record batches not inflated (over STREAM_APP_FETCH_MAX_BATCH_BYTES once inflated, over "
    "STREAM_APP_FETCH_MAX_BATCH_RECORDS, or unreadable), by reason: each is dead-lettered by position.",
    ["reason"],
    registry=REGISTRY,
)
FETCH_STALLS = Counter(
    "stream_app_fetch_stalls_total",
    "Partitions the librdkafka driver meant to fetch that fetched nothing for a statistics interval "
    "while behind their high watermark, their leader up (logged as rdkafka_fetch_stuck), each "
    "seeked to where the app's records end to fetch it again.",
    registry=REGISTRY,
)
FETCH_INFLATED_BYTES = Counter(
    "stream_app_fetch_inflated_bytes_total",
    "Bytes of compressed record batches inflated by the worker's consumer, within the per-batch budget.",
    registry=REGISTRY,
)
DEAD_LETTERS_REDUCED = Counter(
    "stream_app_dead_letters_reduced_total",
    "Dead letters Kafka refused for good and that were sent again in their minimal form (position, "
    "reason, sizes and digests), by stage.",
    ["stage"],
    registry=REGISTRY,
)
DEAD_LETTERS_LOST = Counter(
    "stream_app_dead_letters_lost_total",
    "Dead letters Kafka refused for good even in their minimal form: the record was skipped, counted "
    "and logged (dead_letter_lost, with its position and reason), by stage. Any increase pages "
    "(StreamAppDeadLetterLost).",
    ["stage"],
    registry=REGISTRY,
)
# --- API manners (issue 26) ----------------------------------------------------------------------
API_REQUESTS_LIMITED = Counter(
    "stream_app_api_requests_limited_total",
    "API requests answered 429, by reason (rate: the caller's token bucket was empty; in_flight: too many"
    " of its requests were being answered) and caller (token, address: no known token).",
    ["reason", "caller"],
    registry=REGISTRY,
)
API_REFUSALS_UNAUDITED = Counter(
    "stream_app_api_refusals_unaudited_total",
    "Refused directives with no audit record of their own (over STREAM_APP_API_REFUSAL_AUDITS_PER_MINUTE"
    " for their token; the token's next audited refusal carries their number), by reason.",
    ["reason"],
    registry=REGISTRY,
)
API_BODIES_REFUSED = Counter(
    "stream_app_api_bodies_refused_total",
    "Request bodies the API refused unread or unparsed, by reason (too_large: 413; not_utf8, not_json,"
    " lone_surrogate: 400).",
    ["reason"],
    registry=REGISTRY,
)
API_WRITES_UNCONFIRMED = Counter(
    "stream_app_api_writes_unconfirmed_total",
    "Directives Kafka did not acknowledge within STREAM_APP_API_WRITE_TIMEOUT_S: answered 503, audited"
    " unconfirmed; each may still be delivered later.",
    registry=REGISTRY,
)
API_STREAMS_REVOKED = Counter(
    "stream_app_api_streams_revoked_total",
    "Live alert streams closed because their token was revoked (or lost its role) while they were open.",
    registry=REGISTRY,
)

# --- the center's screen (issue 30): its own registry, served by `stream-app screen` only ------------
SCREEN_REGISTRY = CollectorRegistry(auto_describe=True)
SCREEN_READER_LAG = Gauge(
    "stream_app_screen_reader_lag_seconds",
    "Seconds since the screen's reader of center.alerts last read a record or confirmed it is caught up "
    "(since the screen started, before its first): how far behind the stream its pages may be.",
    registry=SCREEN_REGISTRY,
)
SCREEN_READY = Gauge(
    "stream_app_screen_ready",
    "1 when the screen's GET /readyz answers 200: Redis answered its last probe and the alerts' reader is "
    "within STREAM_APP_SCREEN_READER_STALE_S.",
    registry=SCREEN_REGISTRY,
)
SCREEN_PAGES_CONNECTED = Gauge(
    "stream_app_screen_pages_connected",
    "Live alert streams (pages) open on the screen.",
    registry=SCREEN_REGISTRY,
)
SCREEN_EVENTS_PUSHED = Counter(
    "stream_app_screen_events_pushed_total",
    "Alert changes queued to the screen's open pages (one per page and change; status events excluded).",
    registry=SCREEN_REGISTRY,
)
SCREEN_REQUEST_SECONDS = Histogram(
    "stream_app_screen_request_seconds",
    "Time the screen took to answer a request, by route (its path template; `unmatched` for any other "
    "path). Live streams are not timed: they stay open.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=SCREEN_REGISTRY,
)

# Their series exist from start-up (at 0), so `increase()` sees the first poison record of a worker.
AGENTS = ("intake", "directives", "consolidate", "rollup")
POISON_REASONS = {stage: reasons.poison_at(stage) for stage in AGENTS}


# Series that exist from start-up (at 0), so the first event is an increase an alert rule sees.
for _stage in AGENTS:
    DEAD_LETTERS_LOST.labels(_stage)
    DEAD_LETTERS_REDUCED.labels(_stage)
for _reason in reasons.emitted_by(reasons.FETCH):
    FETCH_BATCHES_WITHHELD.labels(_reason)


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(a)`` for each amount, counted per bucket first: one increment per bucket
    touched and one for the sum, instead of a locked increment pair and a bucket scan per value
    (per-record latencies of a batch of thousands). Falls back to ``observe`` if the client's
    histogram is not laid out as this expects."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts = [0] * len(bounds)
    added, seen = 0.0, False
    for amount in amounts:
        added += amount
        seen = True
        if amount != amount:  # noqa: PLR0124 - NaN: observe counts it in the sum only, in no bucket
            continue
        counts[bisect_left(bounds, amount)] += 1  # the first bound >= amount, as observe's scan finds
    if not seen:
        return
    total.inc(added)
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)


# A forged directive is a security event: its series exists before the first one (alert rule).
RECORDS_REJECTED.labels("CENTER", Reason.UNAUTHENTICATED_DIRECTIVE)
