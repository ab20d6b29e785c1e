"""What the librdkafka driver hands Faust: a confluent ``Message`` as Faust's message, and the stand-in
of a record batch librdkafka cannot read, found whole by bisecting with a probe consumer."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from faust.types import TP, ConsumerMessage

from stream_app.domain.reasons import Reason
from stream_app.kafka.fetch_bounds import Withheld
from stream_app.kafka.rdlanes.properties import CALL_TIMEOUT_S
from stream_app.logs import get_logger

log = get_logger(__name__)

# errors of a record batch librdkafka could not read: a stand-in takes its place (dead-lettered)
_RECORD_ERRORS = {
    KafkaError._BAD_COMPRESSION: Reason.BATCH_UNDECODABLE,
    KafkaError._BAD_MSG: Reason.BATCH_UNDECODABLE,
    KafkaError.INVALID_MSG: Reason.BATCH_UNDECODABLE,
    KafkaError._CRIT_SYS_RESOURCE: Reason.DECOMPRESSED_TOO_LARGE,
    KafkaError.MSG_SIZE_TOO_LARGE: Reason.DECOMPRESSED_TOO_LARGE,
}


class RdRecord:
    """A stand-in for a record librdkafka could not read (a confluent ``Message`` in shape): its value is
    a :class:`Withheld` the stage dead-letters by position."""

    __slots__ = ("_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, value: Withheld) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def error(self) -> None:
        return None


def stand_in(topic: str, partition: int, offset: int, error: KafkaError, last: int | None = None) -> RdRecord:
    """The stand-in of a batch librdkafka failed to read from ``offset`` to ``last`` (the same when its
    end is not known), at its last offset: the offsets before it are a gap, and its ack moves the
    partition's commit past the batch."""
    withheld = Withheld(b"")
    withheld.reason = _RECORD_ERRORS.get(error.code(), Reason.BATCH_UNDECODABLE)
    withheld.detail = f"librdkafka: {error.name()}: {error.str()}"[:500]
    withheld.first_offset = offset
    withheld.last_offset = offset if last is None else last
    withheld.codec = "unknown"
    withheld.compressed_bytes = 0
    withheld.compressed_sha256 = hashlib.sha256(b"").digest()
    return RdRecord(topic, partition, withheld.last_offset, withheld)


def batch_end(open_probe: Callable[[], Any], tp: TP, base: int) -> int | None:
    """The first offset after the unreadable batch at ``base`` (None: not found in time): the first
    offset between it and the high watermark whose fetch does not fail at ``base``."""
    try:
        probe = open_probe()
    except KafkaException as exc:
        log.warning("rdkafka_probe_failed", reason=str(exc)[:200])
        return None
    part = TopicPartition(tp.topic, tp.partition)
    try:
        low, high = base + 1, int(probe.get_watermark_offsets(part, timeout=CALL_TIMEOUT_S)[1])
        while low < high:
            middle = (low + high) // 2
            probe.assign([TopicPartition(tp.topic, tp.partition, middle)])
            fails = _probe_fails(probe, base)
            if fails is None:
                return None
            low, high = (middle + 1, high) if fails else (low, middle)
    except KafkaException as exc:
        log.warning("rdkafka_probe_failed", reason=str(exc)[:200])
        return None
    else:
        return low
    finally:
        probe.close()


def _probe_fails(probe: Any, base: int) -> bool | None:
    """Whether the probe's fetch fails at ``base`` again (None: no answer within the call bound)."""
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while time.monotonic() < deadline:
        for message in probe.consume(num_messages=1, timeout=0.5):
            error = message.error()
            if error is None:
                return False  # a record: the fetch got past the batch
            if message.offset() == base:
                return True
            # end of partition, a broker or transport error: no word on the batch yet, ask again
    return None


def to_message(tp: TP, record: Any, generation: int) -> ConsumerMessage:
    """Faust's message of a confluent ``Message`` (headers kept: dead letters carry them)."""
    kind, stamp = record.timestamp()
    key, value = record.key(), record.value()
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        record.offset(),
        stamp / 1000.0 if kind else cast(float, None),
        kind,
        record.headers() or [],
        key,
        value,
        None,
        len(key) if key is not None else 0,
        len(value) if value is not None else 0,
        tp,
        generation_id=generation,
    )
