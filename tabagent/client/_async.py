"""The asyncio client for `Gateway.Process`."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import BinaryIO

import grpc

from tabagent import serving, telemetry
from tabagent.client._config import FILE_PIECE
from tabagent.client._events import Artifact, Done, Event, VideoFragment, convert
from tabagent.errors import CORE_INTERNAL, InvalidInput, UpstreamError, error_for_status, rpc_status
from tabagent.serving.auth import bearer_interceptors
from tabagent.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

# Codes after which a retry is safe: the gateway refused the song before doing any work.
# (A lost write, grpc.aio's "Internal error from Core", reads as UNAVAILABLE: see
# tabagent.errors.rpc_status. Before the gateway answered, nothing of the song ran.)
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
MAX_BACKOFF = 8.0
API_KEY_ENV = "TABAGENT_API_KEY"


def backoff_delay(attempt: int, base: float) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): exponential, capped, with jitter.

    The jitter (between half and all of the exponential step) keeps many clients refused
    at once from coming back at once.
    """
    step = min(MAX_BACKOFF, base * 2 ** attempt)
    return step * (0.5 + random.random() / 2)


class _Attempt:
    """One call: whether the gateway answered at all (after that, a retry could repeat
    work), and whether the call is over (the request iterator stops)."""

    answered = False
    ended = False


class AsyncClient:
    """Streams local files through a Tab Agent gateway.

    Args:
        address: gateway address ("localhost:50050"); ignored when `channel` is given.
        channel: an existing grpc.aio channel (tests inject one).
        retries: attempts after a refusal (UNAVAILABLE / RESOURCE_EXHAUSTED before any
            response), with exponential backoff; never after work has started.
        timeout: deadline in seconds for a whole song (None = none).
        backoff: the first retry waits about this long, doubling each time (at most 8 s).
        api_key: the gateway's API key, sent as `authorization: Bearer <key>` on every call;
            default TABAGENT_API_KEY ("" or unset: none). Ignored when `channel` is given
            (the injected channel carries its own credentials).

    Example:
        async with AsyncClient("localhost:50050") as client:
            async for event in client.process("song.mp3", process_config(), out_dir="out"):
                if isinstance(event, Notes):
                    print(event.part, len(event.notes), "notes up to", event.final_until)
    """

    def __init__(self, address: str = "localhost:50050", channel: grpc.aio.Channel | None = None,
                 retries: int = 3, timeout: float | None = None, *, backoff: float = 0.5,
                 api_key: str | None = None) -> None:
        self._own = channel is None
        key = (os.environ.get(API_KEY_ENV, "") if api_key is None else api_key).strip()
        self._channel = channel or grpc.aio.insecure_channel(
            address, options=serving.channel_options(),
            interceptors=[*telemetry.client_interceptors(), *bearer_interceptors(key)])
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.attempts = 0  # calls made by the last process() (1 + retries used)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel (only when this client opened it)."""
        if self._own:
            await self._channel.close()

    async def process(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                      out_dir: str | Path | None = None) -> AsyncGenerator[Event, None]:
        """Send a file and yield events until the song is done.

        Artifacts are written into `out_dir` when given (video.mp4 from the live video
        fragments), else returned in memory as `Artifact.data`.

        Raises:
            tabagent.errors.TabAgentError: the subclass matching the gateway's status
                (InvalidInput and its subclasses for a bad file or config, Overloaded when
                the gateway stayed busy through every retry, DeadlineExceeded, ...).
        """
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        outdir = Path(out_dir) if out_dir is not None else None
        self.attempts = 0
        while True:
            self.attempts += 1
            attempt = _Attempt()
            try:
                async for event in self._once(path, config, outdir, attempt):
                    yield event
                return
            except grpc.RpcError as exc:
                lost_write = (exc.details() if hasattr(exc, "details") else "") == CORE_INTERNAL
                code, details = rpc_status(exc)
                if not attempt.answered and code in RETRYABLE and self.attempts <= self.retries:
                    delay = backoff_delay(self.attempts, self.backoff)
                    log.info("gateway refused the song (%s: %s); retry %d of %d in %.1f s",
                             code.name, details, self.attempts, self.retries, delay)
                    await asyncio.sleep(delay)
                    continue
                if lost_write and attempt.answered:
                    raise UpstreamError(
                        "the gateway ended the song while the file was still being sent, and grpc lost "
                        "its reason (grpc/grpc#36066); the gateway's log has it", code) from None
                raise error_for_status(code, details) from None

    async def _once(self, path: Path, config: gateway_pb2.ProcessConfig,
                    outdir: Path | None, attempt: _Attempt) -> AsyncIterator[Event]:
        # The file's bytes wait for the gateway's first answer (Started): a refusal (busy,
        # not ready, bad config) then ends a call that has nothing in flight. A write racing
        # the server's status makes grpc.aio report INTERNAL "Internal error from Core"
        # instead of the real status (grpc/grpc#36066), which would defeat safe retries.
        accepted = asyncio.Event()

        async def requests() -> AsyncIterator[gateway_pb2.ProcessRequest]:
            yield gateway_pb2.ProcessRequest(config=config)
            await accepted.wait()
            if attempt.ended:
                return
            with open(path, "rb") as f:
                while not attempt.ended and (data := await asyncio.to_thread(f.read, FILE_PIECE)):
                    yield gateway_pb2.ProcessRequest(data=data)

        assembler = _Assembler(outdir)
        call = self._stub.Process(requests(), timeout=self.timeout)
        try:
            async for resp in call:
                if not attempt.answered:
                    attempt.answered = True
                    accepted.set()
                if resp.WhichOneof("payload") == "artifact":
                    done = assembler.add(resp.artifact)
                    if done is not None:
                        yield done
                    continue
                event = convert(resp)
                if isinstance(event, VideoFragment):
                    assembler.video(event)
                    yield event
                    continue
                if event is not None:
                    if isinstance(event, Done):
                        video = assembler.finish_video()
                        if video is not None:
                            yield video
                    yield event
        finally:
            attempt.ended = True
            accepted.set()  # lets a request iterator still waiting finish
            call.cancel()
            assembler.close()


class _Assembler:
    """Joins artifact pieces (and live video fragments) into files or bytes."""

    def __init__(self, outdir: Path | None) -> None:
        self.outdir = outdir
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
        self.buffers: dict[str, bytearray] = {}
        self.files: dict[str, BinaryIO] = {}
        self.sizes: dict[str, int] = {}
        self._video_file: BinaryIO | None = None
        self._video_bytes: bytearray | None = None
        self._video_size = 0

    def add(self, piece: gateway_pb2.Artifact) -> Artifact | None:
        name = Path(piece.name).name  # never a path from the wire
        if name in ("", ".", ".."):
            raise UpstreamError(f"the gateway sent an artifact named {piece.name!r}", grpc.StatusCode.INTERNAL)
        if self.outdir is not None:
            f = self.files.get(name)
            if f is None:
                f = self.files[name] = open(self.outdir / name, "wb")  # noqa: SIM115
            f.write(piece.data)
        else:
            self.buffers.setdefault(name, bytearray()).extend(piece.data)
        self.sizes[name] = self.sizes.get(name, 0) + len(piece.data)
        if not piece.last:
            return None
        if self.outdir is not None:
            self.files.pop(name).close()
            return Artifact(name, piece.content_type, self.sizes[name], path=self.outdir / name)
        return Artifact(name, piece.content_type, self.sizes[name], data=bytes(self.buffers.pop(name)))

    def video(self, fragment: VideoFragment) -> None:
        """Append a live fragment to video.mp4 (reported as an Artifact at the end)."""
        if self.outdir is not None:
            if self._video_file is None:
                self._video_file = open(self.outdir / "video.mp4", "wb")  # noqa: SIM115
            self._video_file.write(fragment.data)
        else:
            if self._video_bytes is None:
                self._video_bytes = bytearray()
            self._video_bytes.extend(fragment.data)
        self._video_size += len(fragment.data)

    def finish_video(self) -> Artifact | None:
        if self._video_file is not None:
            self._video_file.close()
            self._video_file = None
            assert self.outdir is not None
            return Artifact("video.mp4", "video/mp4", self._video_size, path=self.outdir / "video.mp4")
        if self._video_bytes is not None:
            data, self._video_bytes = bytes(self._video_bytes), None
            return Artifact("video.mp4", "video/mp4", len(data), data=data)
        return None

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()
        if self._video_file is not None:
            self._video_file.close()
