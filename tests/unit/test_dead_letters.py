"""Every dead letter fits, by construction: whatever a reporter sends (key, value, headers, up to the
broker's limits, any bytes or text), the letter the publisher sends is within the output budget, says
what it left out, and describes what it left out by size and digest. (On the real broker, a letter
Kafka refuses anyway: tests/integration/test_hostile_reporters.py.)"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.domain.model import Rejection
from stream_app.domain.reasons import Reason
from stream_app.kafka.dead_letters import HEADERS_MAX_COUNT, LetterBounds, dead_letter
from stream_app.kafka.fetch_bounds import Withheld
from stream_app.settings import Settings
from stream_app.wire import codecs
from stream_app.wire.schemas import load_schemas

SETTINGS = Settings()
SCHEMAS = load_schemas(SETTINGS.schemas_dir)
SCHEMA = SCHEMAS.latest("dead_letter")
BOUNDS = LetterBounds.from_settings(SETTINGS)
BROKER_MAX = 1_048_588  # the broker's message.max.bytes: no single part of a record can be larger


def _sized(max_size: int) -> st.SearchStrategy[bytes]:
    """Bytes of any size up to ``max_size``: random when small, a repeated random block when large
    (generating a megabyte of random bytes per example would make the test crawl)."""
    small = st.binary(max_size=256)
    large = st.tuples(st.binary(min_size=1, max_size=64), st.integers(1, max_size)).map(
        lambda pair: (pair[0] * (pair[1] // len(pair[0]) + 1))[: pair[1]]
    )
    return st.one_of(small, large)


headers_strategy = st.one_of(
    st.lists(st.tuples(st.text(max_size=40), st.one_of(st.none(), _sized(2048))), max_size=8),
    st.lists(st.tuples(st.text(max_size=4), st.binary(max_size=4)), min_size=60, max_size=300),
    st.lists(st.tuples(st.text(max_size=8), _sized(300_000)), max_size=3),
)


def _message(key: bytes | None, value: Any, headers: list[tuple[str, bytes | None]]) -> SimpleNamespace:
    return SimpleNamespace(
        topic="reporter.mae.observations", partition=3, offset=41, key=key, value=value, headers=headers
    )


TIGHT = Settings(
    intake_max_key_bytes=8192,
    intake_max_headers_bytes=8192,
    intake_max_record_bytes=200_000,
    output_max_bytes=200_000 + 2 * 8192 + 16 * 1024,
)
"""The largest key and headers the settings take, and the smallest output that holds their letter."""


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    key=st.one_of(st.none(), _sized(BROKER_MAX)),
    value=st.one_of(st.none(), _sized(BROKER_MAX)),
    headers=headers_strategy,
    reason_text=st.text(max_size=5000),
    config=st.sampled_from([SETTINGS, TIGHT]),
)
def test_every_letter_fits_and_says_what_it_left_out(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
    reason_text: str,
    config: Settings,
) -> None:
    bounds = LetterBounds.from_settings(config)
    letter = dead_letter(
        _message(key, value, headers),
        "reporter.mae.dead-letters",
        Rejection(Reason.UNDECODABLE, reason_text),
        now_ms=1,
        stage="intake",
    ).fitted(bounds)
    encoded = letter.encode(SCHEMA)
    assert len(encoded) + len(letter.key or b"") <= config.output_max_bytes
    record = codecs.decode(SCHEMAS, "dead_letter", encoded)

    original = value or b""
    assert (record["original_size"], record["original_sha256"]) == (
        len(original),
        hashlib.sha256(original).digest(),
    )
    assert record["original_truncated"] == (len(original) > bounds.original_bytes)
    assert record["original"] == (b"" if record["original_truncated"] else original)

    if key is None:
        assert (record["source_key"], record["source_key_size"], record["source_key_truncated"]) == (
            None,
            None,
            False,
        )
        assert letter.key is None
    else:
        assert record["source_key_size"] == len(key)
        assert record["source_key_sha256"] == hashlib.sha256(key).digest()
        assert record["source_key_truncated"] == (len(key) > bounds.key_bytes)
        kept = not record["source_key_truncated"]
        assert record["source_key"] == (key if kept else None)
        assert letter.key == (key if kept else hashlib.sha256(key).digest())

    size = sum(len(name.encode("utf-8", "replace")) + len(v or b"") for name, v in headers)
    too_many = len(headers) > HEADERS_MAX_COUNT
    assert record["source_headers_truncated"] == (
        too_many or record["source_headers_size"] > bounds.headers_bytes
    )
    if headers and not record["source_headers_truncated"]:
        assert [h["value"] for h in record["source_headers"]] == [v for _, v in headers]
    assert record["source_headers_size"] <= size + 4 * len(headers)  # names sanitised, never grown much
    assert len(record["message"]) <= 2000
    assert not record["minimal"]

    minimal = letter.minimal()
    small = minimal.encode(SCHEMA)
    assert len(small) < 2048, "a minimal letter is a few hundred bytes"
    back = codecs.decode(SCHEMAS, "dead_letter", small)
    assert (back["minimal"], back["original"], back["source_key"]) == (True, b"", None)
    assert back["original_sha256"] == record["original_sha256"]
    assert (back["source_partition"], back["source_offset"]) == (3, 41)


def test_a_message_with_lone_surrogates_and_any_script_is_valid_text_in_the_letter() -> None:
    letter = dead_letter(
        _message(b"k", b"v", [("\udcff-name", b"x")]),
        "dlq",
        Rejection(Reason.UNDECODABLE, "bad \ud800 byte; Hà Nội 🌊" * 400),
        now_ms=1,
        stage="intake",
    ).fitted(BOUNDS)
    record = codecs.decode(SCHEMAS, "dead_letter", letter.encode(SCHEMA))
    assert "\ud800" not in record["message"]
    assert "Hà Nội" in record["message"]
    assert len(record["message"].encode()) <= 4000
    assert record["source_headers"][0]["name"] == "?-name"


def test_a_withheld_batch_is_dead_lettered_by_its_first_and_last_offsets() -> None:
    withheld = Withheld(b"")
    withheld.reason, withheld.detail = (
        Reason.DECOMPRESSED_TOO_LARGE,
        "zstd batch of 9 KB inflates past 32 MiB",
    )
    withheld.first_offset, withheld.last_offset = 100, 139
    withheld.codec, withheld.compressed_bytes, withheld.compressed_sha256 = "zstd", 9000, b"\1" * 32
    message = SimpleNamespace(topic="t", partition=0, offset=139, key=None, value=withheld, headers=())
    record = dead_letter(
        message, "dlq", Rejection(withheld.reason, withheld.detail), now_ms=1, stage="intake"
    ).record
    assert (record["source_offset"], record["source_last_offset"]) == (100, 139)
    assert (record["original"], record["original_truncated"]) == (b"", True)
    assert (record["original_size"], record["original_sha256"]) == (9000, b"\1" * 32)
