"""A song survives the death of a replica: a stage's stream can be sent again, from the start.

Each downstream stream of a song (separate, transcribe per part, render) reads its
messages through a `Replay`: every message taken from the stage's input queue is also
appended to a tape on disk, so when the replica serving the stream dies, the stage opens
a new stream (the channel's round-robin picks a live replica) and sends the config and
the whole tape again before going on with the live input. The stage then drops what it
already passed on (stem samples, notes and video fragments before the point it had
reached), so the song goes on as if nothing had happened. Streaming is exact (the same
input gives the same output however it is chunked), which is what makes this sound.

The tapes live in the song's working folder and are removed when the song ends; they
hold the float32 audio a stage was sent (about 10.6 MB per minute of mono stem, 21 MB of
stereo mix), never anything in memory beyond one message. With no retries configured
(TABAGENT_FAILOVER_RETRIES=0) nothing is written and a stream's failure ends the song.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import grpc

from tabagent.errors import rpc_status

log = logging.getLogger(__name__)

M = TypeVar("M")

END = object()          # put in a stage's input queue after its last item
_LENGTH = struct.Struct("<I")
BACKOFF = (0.2, 1.0, 2.0, 4.0)   # seconds before restart 1, 2, ... (the last repeats)


def retryable(exc: grpc.RpcError, responses: int) -> bool:
    """Whether a failed downstream stream may be opened again on another replica.

    UNAVAILABLE (the replica died, or refused a new stream while draining) always is;
    RESOURCE_EXHAUSTED only before the service answered (it refused the stream, nothing
    ran). Everything else (bad input, a deadline, a bug) is final.
    """
    code, _ = rpc_status(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and responses == 0


def backoff(restart: int) -> float:
    """Seconds to wait before restart number `restart` (1, 2, ...)."""
    return BACKOFF[min(restart, len(BACKOFF)) - 1]


class Replay(Generic[M]):
    """The messages of one stage's stream: live from `queue`, kept on a tape for restarts.

    `requests()` is a fresh request iterator for each attempt: the config, every message
    taken so far (read back from the tape), then the live input until its END. Only one
    reader at a time takes from the queue (a lock), and whatever it takes goes on the
    tape first, so a stale iterator of a dead stream can never steal a message from the
    new one: the new one reads it from the tape.

    Args:
        first: the stream's config message (sent first on every attempt).
        queue: the stage's input; items end with END.
        wrap: turns a queue item into the request message.
        parse: parses a message back from the tape (the request class's FromString).
        tape: the tape file; None keeps no tape (no restart is possible).
    """

    def __init__(self, first: M, queue: asyncio.Queue[Any], wrap: Callable[[Any], M],
                 parse: Callable[[bytes], M], tape: Path | None) -> None:
        self.first = first
        self.queue = queue
        self.wrap = wrap
        self.parse = parse
        self.path = tape
        self._writer: BinaryIO | None = None
        self._offsets: list[tuple[int, int]] = []   # (position, length) of each message
        self._size = 0
        self._ended = False
        self._taken = 0
        self._lock = asyncio.Lock()
        self.attempt = 0

    @property
    def replayable(self) -> bool:
        """Whether a new attempt can send everything again (a tape is kept)."""
        return self.path is not None

    def requests(self) -> AsyncIterator[M]:
        """The request iterator of a new attempt."""
        self.attempt += 1
        return self._iterate(self.attempt)

    async def _iterate(self, attempt: int) -> AsyncIterator[M]:
        yield self.first
        position = 0 if self.replayable else self._taken
        while attempt == self.attempt:
            if position < len(self._offsets):
                message = await asyncio.to_thread(self._read, position)
            else:
                async with self._lock:
                    if position < len(self._offsets):
                        continue
                    if self._ended:
                        return
                    item = await self.queue.get()
                    if item is END:
                        self._ended = True
                        return
                    message = self.wrap(item)
                    self._record(message)
            position += 1
            yield message

    def _record(self, message: M) -> None:
        self._taken += 1
        if self.path is None:
            self._offsets.append((0, 0))
            return
        data = message.SerializeToString()  # type: ignore[attr-defined]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer.write(_LENGTH.pack(len(data)))
        self._writer.write(data)
        self._offsets.append((self._size + _LENGTH.size, len(data)))
        self._size += _LENGTH.size + len(data)

    def _read(self, index: int) -> M:
        assert self.path is not None and self._writer is not None
        self._writer.flush()
        position, length = self._offsets[index]
        with open(self.path, "rb") as f:
            f.seek(position)
            return self.parse(f.read(length))

    def close(self) -> None:
        """Remove the tape (the stage is over)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
