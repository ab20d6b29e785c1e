"""What the API accepts as a request body and as text: bounded, UTF-8, JSON, no lone surrogates.

Every refusal is a :class:`BodyRefusedError` carrying its status (413 or 400), a reason code and a sentence,
so the server answers it instead of failing later: a lone surrogate (``"\\ud800"`` is valid JSON) cannot
be encoded as UTF-8, so it would only fail when the directive is encoded for Kafka, as a 500.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


class BodyRefusedError(Exception):
    """A body (or a text in it) the API will not take: answered ``status`` with ``reason``."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail

    def body(self) -> dict[str, str]:
        error = "payload_too_large" if self.status == 413 else "bad_request"
        return {"error": error, "reason": self.reason, "detail": self.detail}


class ByteStream(Protocol):
    """A request's body as it arrives (aiohttp's ``request.content``)."""

    async def read(self, n: int = -1) -> bytes: ...


def too_large(limit: int) -> BodyRefusedError:
    return BodyRefusedError(413, "too_large", f"the body is larger than {limit} bytes")


def check_declared_size(content_length: int | None, limit: int) -> None:
    """Refuse a body its Content-Length already shows too large, before a byte of it is read."""
    if content_length is not None and content_length > limit:
        raise too_large(limit)


async def read_bounded(stream: ByteStream, limit: int) -> bytes:
    """The body, read up to ``limit`` bytes; one byte more is a 413 (a body sent chunked, or with a
    Content-Length that lies, is cut there, never held whole)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)


def parse_json(raw: bytes) -> Any:
    """The body as JSON, from UTF-8 only (JSON's own rule for a network exchange, RFC 8259)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefusedError(400, "not_utf8", f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyRefusedError(
            400, "not_json", f"the body is not JSON: {exc.msg} at character {exc.pos}"
        ) from None
    except (ValueError, RecursionError):  # a number too long to convert, arrays nested thousands deep
        raise BodyRefusedError(400, "not_json", "the body is not JSON this API reads") from None


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (a half of a UTF-16 pair, not a character), or None."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return index
    return None


def check_text(name: str, text: str) -> None:
    """Refuse a text that is not all characters (it could not be stored nor sent as UTF-8)."""
    index = lone_surrogate(text)
    if index is not None:
        detail = f"{name} holds a lone surrogate (U+{ord(text[index]):04X}) at character {index}: not text"
        raise BodyRefusedError(400, "lone_surrogate", detail)


def printable(text: str) -> str:
    """``text`` with each lone surrogate replaced, for an audit record or a log line about a request
    that was refused for holding one."""
    if lone_surrogate(text) is None:
        return text
    return "".join(REPLACEMENT if "\ud800" <= char <= "\udfff" else char for char in text)
