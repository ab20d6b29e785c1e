"""Which failures are waited out and which dead-letter the record: an allow-list, not a deny-list."""

from __future__ import annotations

import pytest
from aiokafka import errors as kafka_errors
from redis import exceptions as redis_errors

from stream_app.ops.failures import Failure, classify_kafka, classify_redis, error_type


class ProducerSendError(Exception):
    """Like Faust's: wraps aiokafka's error with ``raise ... from``."""


def _wrapped(cause: BaseException) -> BaseException:
    outer = ProducerSendError(f"Error while sending: {cause!r}")
    outer.__cause__ = cause  # what `raise ... from cause` sets
    return outer


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaConnectionError(),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.LeaderNotAvailableError(),
        kafka_errors.NotEnoughReplicasError(),
        kafka_errors.NodeNotReadyError(),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_kafka_transient_errors_are_waited_out(error: BaseException) -> None:
    assert classify_kafka(error) is Failure.TRANSIENT
    assert classify_kafka(_wrapped(error)) is Failure.TRANSIENT
    assert Failure.TRANSIENT.retried


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.TopicAuthorizationFailedError(),
        kafka_errors.ClusterAuthorizationFailedError(),
        kafka_errors.SaslAuthenticationFailed(),
        kafka_errors.ProducerClosed(),
    ],
)
def test_kafka_refusals_of_everyone_block_without_dead_lettering(error: BaseException) -> None:
    assert classify_kafka(_wrapped(error)) is Failure.BLOCKED
    assert Failure.BLOCKED.retried


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.RecordTooLargeError(),
        kafka_errors.RecordListTooLargeError(),
        kafka_errors.InvalidTimestampError(),
        kafka_errors.InvalidTopicError(),
        ValueError("a defect"),
        KeyError("NO.SUCH"),
    ],
)
def test_anything_not_known_to_be_transient_is_permanent(error: BaseException) -> None:
    """The bug the issue names: a record too large was retried for ever as if Kafka were down."""
    assert classify_kafka(error) is Failure.PERMANENT
    assert classify_kafka(_wrapped(error)) is Failure.PERMANENT
    assert not Failure.PERMANENT.retried


def test_an_error_the_broker_could_not_name_is_retried_a_few_times() -> None:
    assert classify_kafka(_wrapped(kafka_errors.UnknownError())) is Failure.UNKNOWN
    assert Failure.UNKNOWN.retried


def test_an_error_raised_while_handling_another_is_judged_on_its_own() -> None:
    defect = KeyError("a defect in the handler")
    defect.__context__ = kafka_errors.KafkaConnectionError()  # raised inside `except`, not `from` it
    assert classify_kafka(defect) is Failure.PERMANENT


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (redis_errors.ConnectionError("Connection refused"), Failure.TRANSIENT),
        (redis_errors.TimeoutError(), Failure.TRANSIENT),
        (redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"), Failure.TRANSIENT),
        (
            redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."),
            Failure.TRANSIENT,
        ),
        (redis_errors.ResponseError("BUSY Redis is busy running a script."), Failure.TRANSIENT),
        (
            redis_errors.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
            Failure.TRANSIENT,
        ),
        (redis_errors.ClusterDownError("CLUSTERDOWN The cluster is down"), Failure.TRANSIENT),
        (redis_errors.ResponseError("NOREPLICAS Not enough good replicas to write."), Failure.TRANSIENT),
        (OSError("Network is unreachable"), Failure.TRANSIENT),
        (redis_errors.AuthenticationError("WRONGPASS invalid username-password pair"), Failure.BLOCKED),
        (redis_errors.NoPermissionError("NOPERM this user has no permissions"), Failure.BLOCKED),
        (
            redis_errors.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
            Failure.BLOCKED,
        ),
        (redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), Failure.BLOCKED),
        (
            redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
            Failure.PERMANENT,
        ),
        (
            redis_errors.ResponseError("ERR Error running script: user_script:12: bad argument"),
            Failure.PERMANENT,
        ),
        (redis_errors.DataError("Invalid input of type: 'NoneType'"), Failure.PERMANENT),
        # a Redis Cluster failing over
        (redis_errors.MovedError("3999 127.0.0.1:27002"), Failure.TRANSIENT),
        (redis_errors.AskError("3999 127.0.0.1:27002"), Failure.TRANSIENT),
        (redis_errors.SlotNotCoveredError("Slot 3999 not covered by the cluster"), Failure.TRANSIENT),
        (redis_errors.NoScriptError("No matching script"), Failure.TRANSIENT),
        (
            redis_errors.RedisClusterException("Redis Cluster cannot be connected. Please provide at least"),
            Failure.TRANSIENT,
        ),
        (
            redis_errors.RedisClusterException("EVALSHA - all keys must map to the same key slot"),
            Failure.PERMANENT,
        ),
    ],
)
def test_redis_errors(error: BaseException, expected: Failure) -> None:
    assert classify_redis(error) is expected


def test_error_type_names_the_root_cause() -> None:
    wrapped = _wrapped(kafka_errors.MessageSizeTooLargeError())
    assert error_type(wrapped) == "aiokafka.errors.MessageSizeTooLargeError"
    assert error_type(KeyError("x")) == "builtins.KeyError"


def test_rejections_are_logged_once_per_batch_and_reason_poison_once_each() -> None:
    from types import SimpleNamespace  # noqa: PLC0415 - this test's alone

    from structlog.testing import capture_logs  # noqa: PLC0415

    from stream_app.domain.model import Rejection  # noqa: PLC0415
    from stream_app.domain.reasons import Reason  # noqa: PLC0415
    from stream_app.kafka.dead_letters import Letter, dead_letter, log_rejections  # noqa: PLC0415

    def message(partition: int, offset: int) -> SimpleNamespace:
        return SimpleNamespace(
            topic="reporter.mae.observations", partition=partition, offset=offset, key=None, value=b"x"
        )

    def rejected(partition: int, offset: int, reason: Reason, detail: str) -> Letter:
        return dead_letter(
            message(partition, offset),
            "dlq",
            Rejection(reason, detail),
            now_ms=1,
            stage="intake",
            reporter="MAE",
        )

    with capture_logs() as logs:
        letters = [
            rejected(0, 5, Reason.VALUE_OUT_OF_RANGE, "AQI 900 > 500"),
            rejected(0, 9, Reason.VALUE_OUT_OF_RANGE, "AQI 901 > 500"),
            rejected(1, 2, Reason.VALUE_OUT_OF_RANGE, "AQI 999 > 500"),
            rejected(1, 3, Reason.UNKNOWN_REGION, "region 99"),
            dead_letter(
                message(1, 4),
                "dlq",
                Rejection(Reason.STEP_FAILED, "boom"),
                now_ms=1,
                stage="consolidate",
                poison=True,
            ),
        ]
        log_rejections(letters)
    poison = [e for e in logs if e["event"] == "record_dead_lettered"]
    assert [(e["offset"], e["reason"]) for e in poison] == [(4, "step_failed")]
    summary = {e["reason"]: e for e in logs if e["event"] == "records_rejected"}
    assert set(summary) == {"value_out_of_range", "unknown_region"}
    assert summary["value_out_of_range"]["count"] == 3
    assert summary["value_out_of_range"]["offsets"] == {0: "5..9", 1: "2..2"}
    assert summary["value_out_of_range"]["detail"] == "AQI 900 > 500"
    assert summary["unknown_region"]["reporter"] == "MAE"
