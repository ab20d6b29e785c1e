"""What a failure means for the record that met it: wait it out, or dead-letter the record and move on.

Every failure a stage meets is one of three kinds (Kafka Streams draws the same line between its
exception handlers and fatal errors):

- ``TRANSIENT``: the dependency is briefly unavailable (a connection dropped, a timeout, a partition
  leader moving, Redis loading or failing over). Retried with backoff; the partition waits, nothing
  is acked.
- ``BLOCKED``: the dependency refuses *everyone* until an operator acts (an ACL missing, credentials
  rejected, Redis out of memory). Nothing about the record is wrong, so it is not dead-lettered
  either: it waits like a transient failure, and readiness names the operation.
- ``UNKNOWN``: the broker answered with an error it could not name (``UNKNOWN_SERVER_ERROR``, an
  unknown code): retried a bounded number of times (``UNKNOWN_ATTEMPTS``), then treated as permanent.
- ``PERMANENT``: retrying cannot cure it (a record Kafka refuses as too large or invalid, a Redis
  error about the data, an exception of the step). The record that caused it goes to its stage's
  dead-letter topic with the reason and the exception type, and the partition moves on.

Retrying is opt-in: only errors known to be transient or blocking are retried; anything unknown is
permanent (aiokafka marks its transient errors ``retriable``; so does this allow-list).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from enum import Enum

from aiokafka import errors as kafka_errors
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException as RdKafkaException
from faust.exceptions import NotReady
from redis import exceptions as redis_errors

from stream_app.domain.reasons import Reason
from stream_app.wire.codecs import DecodeError


class Failure(Enum):
    """How a failure is handled."""

    TRANSIENT = "transient"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # an error the server could not name: retried a few times, then permanent
    PERMANENT = "permanent"

    @property
    def retried(self) -> bool:
        """Whether the operation is retried (the partition waits) rather than the record dead-lettered."""
        return self is not Failure.PERMANENT


class RecordRefusedError(ValueError):
    """A record a stage refuses before processing it (not one of ours, forged, misrouted), with the
    dead-letter reason code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def refusal_reason(exc: BaseException, default: Reason) -> Reason:
    """The dead-letter reason an exception carries (a refusal or a decoding error), else ``default``.
    (Other exceptions may have a ``reason`` of their own: ``UnicodeDecodeError`` has one.)"""
    return exc.reason if isinstance(exc, RecordRefusedError | DecodeError) else default


UNKNOWN_ATTEMPTS = 5  # how often an UNKNOWN failure is retried before it counts as permanent

_KAFKA_TRANSIENT: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.RequestTimedOutError,
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.NotEnoughReplicasError,
    kafka_errors.NotEnoughReplicasAfterAppendError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.UnknownTopicOrPartitionError,
    kafka_errors.KafkaStorageError,
    kafka_errors.NotControllerError,
    kafka_errors.StaleMetadata,
    kafka_errors.TooManyInFlightRequests,
    kafka_errors.BrokerNotAvailableError,
    kafka_errors.ReplicaNotAvailableError,
    kafka_errors.KafkaUnavailableError,
    kafka_errors.CorruptRecordException,  # corrupted in transit: the Java client retries it too
    NotReady,  # the producer is starting or stopping
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)
_KAFKA_BLOCKED: tuple[type[BaseException], ...] = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.ProducerClosed,  # the worker is stopping: the batch must not be acked
)


_TOO_LARGE: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
)


def too_large(exc: BaseException) -> bool:
    """Whether Kafka refused a record for its size (a smaller one would be taken)."""
    return any(isinstance(cause, _TOO_LARGE) for cause in causes(exc))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was explicitly raised from (Faust wraps aiokafka's errors with
    ``raise ... from``). An exception merely raised while handling another is judged on its own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


# librdkafka's own (negative) error codes: a broker out of reach, a request that timed out
_RDKAFKA_TRANSIENT = frozenset(
    {
        RdKafkaError._TRANSPORT,
        RdKafkaError._ALL_BROKERS_DOWN,
        RdKafkaError._TIMED_OUT,
        RdKafkaError._MSG_TIMED_OUT,
        RdKafkaError._QUEUE_FULL,
        RdKafkaError._RESOLVE,
        RdKafkaError._WAIT_COORD,
        RdKafkaError._UNKNOWN_TOPIC,
        RdKafkaError._UNKNOWN_PARTITION,
    }
)
_RDKAFKA_BLOCKED = frozenset({RdKafkaError._AUTHENTICATION})


def _classify_librdkafka(error: RdKafkaError) -> Failure:
    """An error of a confluent-kafka client (the alert bridge's and the screen's readers, the probes'
    admin client), judged as the aiokafka error of the same Kafka error code would be."""
    code = error.code()
    if code > 0:
        return classify_kafka(kafka_errors.for_code(code)(error.str()))
    if code in _RDKAFKA_TRANSIENT or error.retriable():
        return Failure.TRANSIENT
    if code in _RDKAFKA_BLOCKED:
        return Failure.BLOCKED
    return Failure.PERMANENT


def classify_kafka(exc: BaseException) -> Failure:
    """A produce (or other client) error: transient, blocking, or permanent for the record."""
    for cause in causes(exc):
        if isinstance(cause, RdKafkaException) and cause.args and isinstance(cause.args[0], RdKafkaError):
            return _classify_librdkafka(cause.args[0])
        if isinstance(cause, _KAFKA_BLOCKED):
            return Failure.BLOCKED
        if isinstance(cause, _KAFKA_TRANSIENT):
            return Failure.TRANSIENT
        if isinstance(cause, kafka_errors.KafkaError) and cause.retriable:
            return Failure.TRANSIENT
        if isinstance(cause, kafka_errors.UnknownError):  # also what unknown error codes map to
            return Failure.UNKNOWN
    return Failure.PERMANENT


# Redis answers some errors as plain "-ERR"-style replies: their first word says what they are.
_REDIS_TRANSIENT_REPLIES = (
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "NOREPLICAS",  # min-replicas-to-write not met: a replica is catching up
)
_CLUSTER_MAP_TROUBLE = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
)
_REDIS_BLOCKED_REPLIES = ("OOM", "NOPERM", "NOAUTH", "WRONGPASS", "MISCONF")


def classify_redis(exc: BaseException) -> Failure:
    """A Redis error: connection trouble and failovers are transient; refusals that an operator must
    lift (ACL, memory, a failing disk) block; an error about the data itself is permanent."""
    for cause in causes(exc):
        if isinstance(
            cause,
            redis_errors.AuthenticationError
            | redis_errors.AuthorizationError
            | redis_errors.NoPermissionError
            | redis_errors.OutOfMemoryError,
        ):
            return Failure.BLOCKED
        if isinstance(
            cause,
            redis_errors.ConnectionError
            | redis_errors.TimeoutError
            | redis_errors.ReadOnlyError
            | redis_errors.TryAgainError
            | redis_errors.ClusterDownError
            | redis_errors.MovedError  # a slot moved (resharding, failover): asked again on the new map
            | redis_errors.AskError
            | redis_errors.ClusterError
            | redis_errors.SlotNotCoveredError  # a failover under way: no primary for the slot yet
            | redis_errors.NoScriptError  # a node restarted between loading a script and running it
            | ConnectionError
            | TimeoutError
            | OSError,
        ):
            return Failure.TRANSIENT
        if isinstance(cause, redis_errors.RedisClusterException) and str(cause).startswith(
            _CLUSTER_MAP_TROUBLE
        ):
            # the cluster client could not load the slot map (no node answered yet, a failover under
            # way); its other refusals (keys across slots, a command without a key) are defects
            return Failure.TRANSIENT
        if isinstance(cause, redis_errors.ResponseError):
            word = str(cause).split(" ", 1)[0].upper()
            if word in _REDIS_TRANSIENT_REPLIES:
                return Failure.TRANSIENT
            if word in _REDIS_BLOCKED_REPLIES:
                return Failure.BLOCKED
    return Failure.PERMANENT


def error_type(exc: BaseException) -> str:
    """The exception's qualified type name, for a dead letter (the root cause when wrapped)."""
    root = exc
    for cause in causes(exc):
        root = cause
    kind = type(root)
    return f"{kind.__module__}.{kind.__qualname__}"[:200]
