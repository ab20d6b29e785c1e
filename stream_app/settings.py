"""The one settings object. Nothing else in the project reads the environment, but for NO_COLOR: a
convention of every terminal tool, not a setting (see :func:`stream_app.logs.colour_allowed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_app.paths import data_file, state_dir

# The checkout this module sits in, for tests and repository tools; the package reads its own files
# through stream_app.paths (they are package data in a wheel).
REPO_ROOT = Path(__file__).resolve().parent.parent
DEAD_LETTER_OVERHEAD_BYTES = (
    16 * 1024
)  # reason, message, positions, names, digests, headers: all but the original


class Settings(BaseSettings):
    """Processor settings, read from ``STREAM_APP_*`` environment variables.

    Frozen: build a new object (``settings.model_copy(update=...)``) to change one in tests.
    """

    model_config = SettingsConfigDict(env_prefix="STREAM_APP_", frozen=True, extra="forbid")

    app_id: str = Field("vn-reporting-stream", description="Faust app id; also the consumer group prefix.")
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, host:port[,...].")
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:16379/0"),
        description=(
            "Redis URL; may hold a password, so kept secret. With STREAM_APP_REDIS_CLUSTER, the host part "
            "may list several nodes to start from (rediss://user:pw@host1:port1,host2:port2/0)."
        ),
    )
    redis_cluster: bool = Field(
        False,
        description=(
            "Redis is a Redis Cluster: the client follows the slot map (MOVED, ASK, failovers) and sends "
            "each key's commands to the primary that holds it."
        ),
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description=(
            "On a Redis Cluster: how many replicas of each primary must hold a batch's state writes (WAIT) "
            "before its records are acknowledged; a failover then loses nothing acknowledged. 1 with one "
            "replica per primary; 0 does not wait (a failover may lose the last writes)."
        ),
    )
    redis_wait_timeout_ms: int = Field(
        2000,
        ge=1,
        le=4000,  # below the Redis clients' 5 s socket timeout: a longer WAIT would read as a lost connection
        description="How long a batch waits for STREAM_APP_REDIS_WAIT_REPLICAS before it is sent again.",
    )
    # --- how every Kafka client authenticates (Faust/aiokafka, confluent producers, consumers, admin) ---
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol: SASL_SSL for the secured local broker."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with a SASL_* protocol)."
    )
    kafka_sasl_username: str | None = Field(
        None, description="SASL user: the principal this process acts as."
    )
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret: never printed).")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) the broker's certificate is checked against (SSL, SASL_SSL)."
    )
    kafka_client_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Any other client property, in librdkafka's names (JSON object), passed to every "
        "confluent client (Faust's aiokafka clients honour ssl.endpoint.identification.algorithm and "
        "a client certificate: ssl.certificate.location, ssl.key.location, ssl.key.password).",
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent schema registry URL, to accept Confluent-framed records (mock:// in tests).",
    )
    output_framing: Literal["single_object", "confluent"] = Field(
        "confluent",
        description="How the public topics' records are framed (center.*, reporters' dead letters and "
        "directives). confluent (the default): 00 + schema id (4 bytes, big-endian) + Avro, the ids those "
        "of <topic>-value in STREAM_APP_SCHEMA_REGISTRY_URL (required), looked up or registered once at "
        "start-up (a worker waits for the registry meanwhile, and never asks it again), for Confluent "
        "deserializers, kcat -s avro, ksqlDB and Connect. single_object: Avro single-object encoding "
        "(C3 01 + fingerprint), no registry anywhere, readers need the .avsc files. Readers here tell "
        "the two apart by the first byte. Internal topics are always single_object.",
    )
    acl_app_user: str = Field(
        "stream-app", description="The app's Kafka user, in the ACLs `acl apply` writes."
    )
    acl_center_user: str = Field(
        "center",
        description="The Kafka user of the center's screens, in the ACLs: reads the center's topics, writes"
        " none.",
    )
    acl_sre_user: str = Field("sre", description="The read-only SRE Kafka user, in the ACLs.")
    schema_registry_auth: SecretStr | None = Field(
        None, description="Schema registry basic auth as user:password (secret)."
    )
    schema_registry_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) of an https registry."
    )
    schema_registry_max_lookups_per_batch: int = Field(
        32,
        ge=1,
        le=1000,
        description=(
            "Most new Confluent schema ids one batch asks the schema registry about (off the event loop,"
            " taken in turn from each input topic); the records of the others are dead-lettered"
            " (schema_not_looked_up), and ids the registry does not know are not asked again for 30 s."
        ),
    )
    topic_namespace: str = Field("", description="Prefix for every topic name (a uuid in tests).")
    topic_profile: str = Field(
        "single",
        description=(
            "Which [profile.<name>] of topics/topics.toml sets the topics' replication: single (one local "
            "broker) or cluster (replication factor 3, min.insync.replicas 2; production)."
        ),
    )
    redis_key_prefix: str = Field("sa", description="Prefix for every Redis key.")

    api_tokens_file: Path | None = Field(
        None,
        description="The API's bearer tokens (TOML, hashed; `stream-app token create` adds one). Unset: "
        "every API request is refused (401); /metrics and the probes stay open.",
    )
    api_requests_per_s: float = Field(
        100.0,
        gt=0,
        description="Requests a second each API token may make, on average (a token bucket per token, on"
        " each server: a worker's API, the screen); beyond it 429 with Retry-After. A screen's page asks"
        " about ten questions when it loads, and one every few seconds after.",
    )
    api_burst: int = Field(
        500,
        ge=1,
        description="Requests an API token may make at once before STREAM_APP_API_REQUESTS_PER_S holds.",
    )
    api_max_in_flight: int = Field(
        32,
        ge=1,
        description="Requests of one API token (or one client address, without a token) being answered at"
        " once; more: 429. A live alert stream holds none.",
    )
    api_anonymous_requests_per_s: float = Field(
        2.0,
        gt=0,
        description="Requests a second each client address may make without a known token (401s included:"
        " slows token guessing); beyond it 429. The address is the connection's peer: behind a proxy,"
        " every client shares the proxy's.",
    )
    api_anonymous_burst: int = Field(
        20, ge=1, description="Requests a client address may make at once without a known token."
    )
    api_refusal_audits_per_minute: int = Field(
        10,
        ge=1,
        description="Audit records of refused directives written per API token and minute; the rest are"
        " counted (stream_app_api_refusals_unaudited_total) and their number rides on the token's next"
        " audited refusal.",
    )
    api_max_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request body the API reads (a directive); larger: 413, unread. Must hold a"
        " directive with the longest comment (4 bytes a character in UTF-8).",
    )
    api_write_timeout_s: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Longest an operator's directive waits for Kafka's acknowledgement before the API answers"
        " 503 (with Retry-After); the record may still be delivered afterwards, and its audit record says"
        " unconfirmed.",
    )
    api_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Where the workers take operators' directives (their HTTP server), for the screen (it"
        " forwards directives there) and `stream-app directive`. Unset: http://<web_host>:<web_port>. In"
        " Kubernetes, the workers' Service.",
    )
    api_token: SecretStr | None = Field(
        None,
        description="The API token `stream-app directive` authenticates with (a person's own, from"
        " `stream-app token create`; secret: never printed). The directive is recorded in its name.",
    )
    web_host: str = Field("127.0.0.1", description="Bind address of the worker's HTTP server (/metrics).")
    web_port: int = Field(
        6066,
        description="Port of the worker's HTTP server: probes, /metrics, the directives the screen forwards.",
    )
    worker_query_api: bool = Field(
        False,
        description="Whether a worker answers the query API's reads (/api/v1) too, on the stream's own event"
        " loop. Off: `stream-app screen` answers them, in a process of its own. Not recommended under"
        " load (8 clients at 76 requests/s raised the mean latency of a 300/s feed 3.4×); for a trial"
        " without a screen.",
    )
    screen_host: str = Field(
        "127.0.0.1", description="Bind address of the center's screen (`stream-app screen`)."
    )
    screen_port: int = Field(
        6080, description="Port of the center's screen: the page, the query API (/api/v1) and live alerts."
    )
    screen_nice: int = Field(
        10,
        ge=0,
        le=19,
        description=(
            "The screen's CPU niceness (added at start): on a host it shares with workers, the writers get"
            " the CPU first and readers wait. 0: as any process."
        ),
    )
    screen_reader_stale_s: float = Field(
        5.0,
        gt=0,
        description=(
            "The screen is stale past this many seconds since its reader of center.alerts last read a record"
            ' or confirmed it is caught up (it confirms every second when idle): its pages say "Stale" and'
            " /readyz answers 503."
        ),
    )
    screen_cache_s: float = Field(
        3.0,
        ge=0,
        description=(
            "How long the screen reuses an answer of its API (every open page asks the same questions: one"
            " Redis read per question and period, however many pages; alert colours are pushed, not read)."
            " Compliance and the briefing are reused a minute. 0: no reuse."
        ),
    )
    screen_timeline_hours: float = Field(
        24.0,
        gt=0,
        le=720,
        description=(
            "How far back the screen's alert timeline (/api/v1/alerts/timeline, the page's Timeline and"
            " handover) reaches: at start the screen reads center.alerts from this many hours ago and keeps"
            " every alert change since, in memory."
        ),
    )
    screen_timeline_max: int = Field(
        50_000,
        ge=100,
        description=(
            "The most alert changes the screen's timeline keeps (the oldest go first; an answer reaching"
            " before what is kept says so: `complete: false`)."
        ),
    )

    batch_max: int = Field(
        2000, ge=1, description="Records per processing batch (a stage takes up to this many at a time)."
    )
    batch_within_s: float = Field(0.05, gt=0, description="Longest wait to fill a batch.")
    batch_age_budget_s: float = Field(
        0.0,
        ge=0,
        description=(
            "How long a record may wait for company in the consolidate stage's batch, counted from when"
            " its reporter produced it: a batch goes on gathering records past STREAM_APP_BATCH_WITHIN_S"
            " until its oldest record is this old (or STREAM_APP_BATCH_MAX records are in). Each entity"
            " visit (read, step, outputs, commit) then carries more records at low rates; a stage that is"
            " behind holds older records and waits only STREAM_APP_BATCH_WITHIN_S. A stage keeping up at"
            " 1,000/s holds young records too and waits as well: off by default, for a deployment that"
            " would rather spend latency than CPU at low rates (docs/performance.md)."
            " 0 (or not above STREAM_APP_BATCH_WITHIN_S): off."
        ),
    )
    lane_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes (keys and values) of fetched records a stage's lane holds before the worker "
        "stops fetching the partitions that fill it (as it does at four batches of records).",
    )
    owned_state_max_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description=(
            "Most bytes of what each stateful stage keeps of the state it wrote of its own partitions, so"
            " it need not read it back from Redis (stream_app/state/owned.py: kept only while each"
            " partition's applied mark is the one the worker wrote). 0: read everything from Redis."
        ),
    )
    owned_state_max_age_s: float = Field(
        600.0,
        gt=0,
        description="Longest a stateful stage keeps what it wrote before reading it from Redis again.",
    )
    consumer_driver: Literal["aiokafka", "librdkafka"] = Field(
        "aiokafka",
        description=(
            "Which Kafka client a worker consumes with: aiokafka (Faust's own; it bounds what a reporter's"
            " compressed batch inflates to) or librdkafka through confluent-kafka (stream_app/kafka/rdlanes/;"
            " it bounds only zstd: for reporters trusted not to send lz4, gzip or snappy bombs;"
            " docs/performance.md). Change it for every worker at once: the two cannot share the group."
        ),
    )
    fetch_min_bytes: int = Field(
        65_536,
        ge=1,
        description=(
            "A worker's fetch is answered once this many bytes are there (or after"
            " STREAM_APP_FETCH_MAX_WAIT_MS): at a trickle, fewer fetches of every partition, each decoded"
            " in Python."
        ),
    )
    fetch_max_wait_ms: int = Field(
        20, ge=0, description="Longest the broker holds a worker's fetch for STREAM_APP_FETCH_MIN_BYTES."
    )
    fetch_idle_wait_ms: int = Field(
        500,
        ge=0,
        description=(
            "After a fetch that brought no record, the next one is answered at the first byte there, or"
            " after this long: an idle worker fetches a few times a second rather than every"
            " STREAM_APP_FETCH_MAX_WAIT_MS (each fetch names every partition, encoded in Python), and the"
            " first record after a quiet spell is not held for STREAM_APP_FETCH_MIN_BYTES. 0: off."
            " aiokafka driver only (librdkafka's fetch is C)."
        ),
    )
    bulk_settle_s: float = Field(
        5.0,
        ge=0,
        description=(
            "A bulk record's change to a reporting period already closed (history, backfills) is published"
            " at the first tick at least this long after it (STREAM_APP_TICK_INTERVAL_S), with what later"
            " bulk records added meanwhile: a period loaded over many batches is republished once per tick,"
            " not per batch. 0: at once, as a live record's."
        ),
    )
    intake_paused: bool = Field(
        False,
        description=(
            "The worker reads no input topic (live or bulk) and sends no tick or directive to the internal "
            "topic: it applies what the internal topics hold and serves the API. To drain them before "
            "`stream-app topics grow`; the input waits in Kafka."
        ),
    )
    bulk_max_ahead: int = Field(
        1000,
        ge=1,
        description=(
            "The bulk intake (history, backfills) waits while the stateful step has more than this many of"
            " the worker's re-keyed records still to apply: the most a live alert can queue behind."
        ),
    )
    live_max_ahead: int = Field(
        1500,
        ge=1,
        description=(
            "The live intake waits while the stateful step has more than this many of the worker's re-keyed"
            " records still to apply: a flood queues in its reporter's topic, shared fairly with the others."
            " Above STREAM_APP_BULK_MAX_AHEAD, so the live intake always runs before the bulk one."
        ),
    )
    briefing_time: str = Field(
        "07:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        description="Local time (Asia/Ho_Chi_Minh, HH:MM or HH:MM:SS) of the daily briefing on "
        "yesterday's figures.",
    )
    tick_interval_s: float = Field(
        30.0, gt=0, description="How often timer-driven rules (absence, late report) are evaluated."
    )
    state_audit_s: float = Field(
        15.0,
        gt=0,
        description="How often a worker checks its stateful partitions' Redis state against Kafka (the "
        "applied marks against the group's committed offsets, a sample of each ledger against its "
        "entities), so a lost state is reported with no record needed to meet it.",
    )
    retry_initial_s: float = Field(
        0.1, gt=0, description="First wait before retrying Redis, Kafka or the registry."
    )
    retry_max_s: float = Field(5.0, gt=0, description="Longest wait between retries (exponential backoff).")
    startup_timeout_s: float = Field(15.0, gt=0, description="How long start-up waits for Kafka and Redis.")
    broker_session_timeout_s: float = Field(
        10.0, gt=0, description="Consumer group session timeout: a silent worker's partitions move after it."
    )
    broker_heartbeat_interval_s: float = Field(
        1.0, gt=0, description="How often a worker heartbeats to its consumer group."
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description=(
            "How long a worker may take to stop after SIGTERM/SIGINT before it exits anyway (a consumer"
            " stuck leaving its group must not outlive a pod's termination grace; nothing is lost: state"
            " commits are atomic with their offsets)."
        ),
    )

    ops_interval_s: float = Field(
        5.0, gt=0, description="How often readiness is probed and consumer lag refreshed (/readyz, /metrics)."
    )
    alertmanager_url: str | None = Field(
        None,
        description="Alertmanager base URL (http://host:9093) to forward the center alerts to; unset: off.",
    )
    runbook_url: str = Field(
        "https://git.example/stream-app/blob/main/docs/runbook.md",
        pattern=r"^https?://[^\s/#]+(/[^\s#]*)?$",
        description="Where docs/runbook.md is published (no anchor): every alert's runbook_url is this"
        " address plus the alert's anchor (`stream-app monitoring render-rules`). The default is the"
        " address the shipped rules carry.",
    )
    alertmanager_resend_s: float = Field(
        60.0,
        gt=0,
        description="How often open center alerts are re-sent to Alertmanager to keep them active.",
    )
    alertmanager_max_pending: int = Field(
        10_000,
        ge=1,
        description=(
            "Most alerts waiting to be posted to Alertmanager (the newest state of each; an older one it"
            " replaces is not sent): beyond it the oldest is dropped and counted, and comes back with the"
            " next re-send of the open alerts."
        ),
    )

    # Bounds on what a reporter may send (each violation is a dead-letter reason code).
    intake_max_record_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest record value accepted, after decompression (oversized)."
    )
    intake_max_key_bytes: int = Field(1024, ge=16, description="Largest record key accepted (key_too_large).")
    reporter_quota_bytes_per_s: int = Field(
        256 * 1024,
        ge=1024,
        description=(
            "Kafka produce quota of each reporter's user, bytes a second as sent (compressed), over its live"
            " and bulk topics: beyond it the broker slows the reporter down (`stream-app quotas apply`;"
            " a reporter's own: quota_bytes_per_s in catalogue/reporters.toml)."
        ),
    )
    reporter_quota_request_percent: float = Field(
        25.0,
        gt=0,
        description=(
            "Kafka request quota of each reporter's user: the share of one broker thread its requests may"
            " take, in percent (`stream-app quotas apply`; a reporter's own: quota_request_percent)."
        ),
    )
    intake_max_headers_bytes: int = Field(
        4096,
        ge=256,
        le=8192,
        description="Most bytes of a record's headers a dead letter carries; more are replaced by their "
        "size and digest (source_headers_truncated).",
    )
    fetch_max_batch_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most bytes one fetched record batch may inflate to (a larger one is not inflated but "
        "dead-lettered by position: decompressed_too_large), and about the most one partition's fetch "
        "is read at once (the rest is fetched again).",
    )
    fetch_max_batch_records: int = Field(
        20_000,
        ge=100,
        description="Most records one fetched record batch may declare; more: dead-lettered by position "
        "(batch_too_many_records).",
    )
    observation_id_max_length: int = Field(
        128,
        ge=8,
        le=1024,
        description="Longest observation id (observation_id_invalid; charset A-Z a-z 0-9 . _ : @ / + -).",
    )
    breakdowns_max: int = Field(
        4, ge=0, le=32, description="Most breakdowns one record may carry (too_many_breakdowns)."
    )
    breakdown_value_max_length: int = Field(
        64, ge=1, le=1024, description="Longest breakdown value (breakdown_value_invalid)."
    )
    text_max_length: int = Field(
        256, ge=16, le=4096, description="Longest free-text field: report_ref, source_system (text_too_long)."
    )
    directive_comment_max_length: int = Field(
        2000, ge=16, le=65536, description="Longest comment of a directive (text_too_long)."
    )
    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        description="How far ahead of the worker's clock an observation's event or report time may be: "
        "checked by the intake, and again by the stateful step on what it reads from the internal topic.",
    )
    output_max_bytes: int = Field(
        900_000,
        ge=64 * 1024,
        description="Largest record the worker produces; a larger output dead-letters what caused it. "
        "Below the broker's message.max.bytes and the producer's request size (1 MiB by default).",
    )
    tick_max_future_s: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="How far ahead of the worker's clock a tick's time may be (`stream-app tick --at`); "
        "ticks only (observations: STREAM_APP_MAX_FUTURE_SKEW_S).",
    )

    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Log lines as JSON, for a console, or auto: console on a TTY, JSON otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged, by the app and its libraries (aiokafka: warning and up)."
    )

    data_dir: Path = Field(
        state_dir("faust"),
        description="Faust's working folder (it keeps no state there: memory store).",
    )
    schemas_dir: Path = Field(
        data_file("avro_schemas"), description="The Avro contracts: one .avsc file per subject and version."
    )
    topics_file: Path = Field(
        data_file("topics", "topics.toml"), description="Every topic's declaration (partitions, configs)."
    )
    catalogue_dir: Path = Field(
        data_file("catalogue"),
        description="The indicator catalogue: indicators, reporters, regions, stations, rules.",
    )

    @model_validator(mode="after")
    def _live_before_bulk(self) -> Settings:
        # ahead in (bulk_max_ahead, live_max_ahead]: only the live intake runs, so it is never held
        # behind history
        if self.live_max_ahead <= self.bulk_max_ahead:
            raise ValueError(
                f"live_max_ahead ({self.live_max_ahead}) must be above bulk_max_ahead ({self.bulk_max_ahead})"
            )
        return self

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> Settings:
        # A dead letter carries the original record and key: it must always fit in an output, or a
        # refused dead letter would have nowhere to go.
        needed = self.intake_max_record_bytes + 2 * self.intake_max_key_bytes + DEAD_LETTER_OVERHEAD_BYTES
        if needed > self.output_max_bytes:
            raise ValueError(
                f"output_max_bytes ({self.output_max_bytes}) must hold a dead letter of the largest record: "
                f"intake_max_record_bytes + 2 x intake_max_key_bytes + {DEAD_LETTER_OVERHEAD_BYTES} "
                f"= {needed}"
            )
        return self

    @model_validator(mode="after")
    def _a_directive_fits_the_body_bound(self) -> Settings:
        # the longest comment the API accepts must be postable: 4 bytes a character, 1 KiB for the rest
        needed = 4 * (self.directive_comment_max_length + 2 * self.text_max_length) + 1024
        if needed > self.api_max_body_bytes:
            raise ValueError(
                f"api_max_body_bytes ({self.api_max_body_bytes}) must hold a directive with the longest"
                " comment and texts: 4 x (directive_comment_max_length + 2 x text_max_length) + 1024"
                f" = {needed}"
            )
        return self

    def topic(self, name: str) -> str:
        """The cluster name of a topic declared in ``topics/topics.toml``."""
        return f"{self.topic_namespace}{name}"

    @property
    def api_base_url(self) -> str:
        """The workers' HTTP API: ``api_url``, or this host's worker."""
        return (self.api_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def group_id(self) -> str:
        """Consumer group (and Faust app id), namespaced like the topics."""
        return f"{self.topic_namespace}{self.app_id}"
