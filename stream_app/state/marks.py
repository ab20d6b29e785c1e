"""The applied marks and the epoch on Redis: how far the state goes, per input partition, and the
refusal of a mark when the state lost what a batch was admitted on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stream_app.state import ledger
from stream_app.state.layer import (
    Checkpoint,
    Mark,
    StateLostError,
)
from stream_app.state.redis_base import RedisBase, _text


class AppliedMarks(RedisBase):
    """Writes and reads the applied marks and the epoch."""

    async def _mark(
        self, pipe: Any, source: str, mark: Mark, vouched: Sequence[tuple[str, int]] = (), now_ms: int = 0
    ) -> None:
        offset, floor = mark
        keys = [self.keys.applied(source), self.keys.rebuilding(), self.keys.ledger(source)]
        args: list[str | int] = [offset, "" if floor is None else floor]
        for entity, at in vouched:
            args += [entity, ledger.encode(at, now_ms)]
        await self._mark_script(keys=keys, args=args, client=pipe)

    async def set_marks(self, marks: Mapping[str, int], epoch: str) -> None:
        """Set the applied marks and the epoch as given (a rebuild's, or an adoption's end)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for source, offset in sorted(marks.items()):
                pipe.set(self.keys.applied(source), offset)
            pipe.set(self.keys.epoch(), epoch)
            await pipe.execute()

    async def checkpoint(self, sources: Sequence[str]) -> Checkpoint:
        """The epoch and the applied marks of ``sources``, in one round trip (waits out Redis)."""

        async def read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(self.keys.epoch())
                pipe.exists(self.keys.rebuilding())
                for source in sources:
                    pipe.get(self.keys.applied(source))
                result: list[Any] = await pipe.execute()
                return result

        epoch, rebuilding, *marks = await self._retry("checkpoint", read)
        return Checkpoint(
            None if epoch is None else _text(epoch),
            {s: None if m is None else int(m) for s, m in zip(sources, marks, strict=True)},
            bool(rebuilding),
        )

    async def begin_epoch(self, epoch: str) -> str:
        key = self.keys.epoch()

        async def write() -> Any:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, epoch, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        return _text(await self._retry("checkpoint", write))


class StateMarkRefusedError(RuntimeError):
    """Redis refused to store an applied mark: the deployment's keys are wrong, not a record."""


def _raise_mark_refusal(marks: Sequence[tuple[str, Mark]], replies: Sequence[Any]) -> None:
    """A refused applied mark: the state lost what the batch was admitted on (StateLostError), or a key
    of another type under its name — a defect of the deployment, not of a record. Raised either way,
    so the batch is not acknowledged."""
    for (source, _), reply in zip(marks, replies, strict=True):
        if isinstance(reply, BaseException):
            if str(reply).startswith("STATELOST"):
                raise StateLostError(f"{source}: {reply}") from reply
            raise StateMarkRefusedError(f"applied mark of {source} refused: {reply!r}") from reply
