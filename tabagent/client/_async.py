"""The asyncio client for `Gateway.Process`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from tabagent import service, telemetry
from tabagent.client._config import FILE_PIECE
from tabagent.client._events import Artifact, Event, VideoFragment, convert
from tabagent.errors import error_for_status
from tabagent.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

# Codes after which a retry is safe: the gateway refused the song before doing any work.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


class AsyncClient:
    """Streams local files through a Tab Agent gateway.

    Args:
        address: gateway address ("localhost:50050"); ignored when `channel` is given.
        channel: an existing grpc.aio channel (tests inject one).
        retries: attempts after a refusal (UNAVAILABLE / RESOURCE_EXHAUSTED before any
            response), with exponential backoff; never after work has started.
        timeout: deadline in seconds for a whole song (None = none).
    """

    def __init__(self, address: str = "localhost:50050", channel: grpc.aio.Channel | None = None,
                 retries: int = 3, timeout: float | None = None) -> None:
        self._own = channel is None
        self._channel = channel or grpc.aio.insecure_channel(
            address, options=service.channel_options(), interceptors=telemetry.client_interceptors())
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self.retries = retries
        self.timeout = timeout

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            await self._channel.close()

    async def process(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                      out_dir: str | Path | None = None) -> AsyncIterator[Event]:
        """Send a file and yield events until the song is done.

        Artifacts are written into `out_dir` when given (video.mp4 from the live video
        fragments), else returned in memory as `Artifact.data`.

        Raises:
            tabagent.errors.TabAgentError: the subclass matching the gateway's status.
        """
        path = Path(path)
        outdir = Path(out_dir) if out_dir is not None else None
        attempt = 0
        while True:
            got_any = False
            try:
                async for event in self._once(path, config, outdir):
                    got_any = True
                    yield event
                return
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                if not got_any and code in RETRYABLE and attempt < self.retries:
                    attempt += 1
                    delay = min(8.0, 0.5 * 2 ** attempt)
                    log.info("gateway refused (%s), retry %d in %.1f s", code.name, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                raise error_for_status(code, exc.details() or str(exc)) from None

    async def _once(self, path: Path, config: gateway_pb2.ProcessConfig,
                    outdir: Path | None) -> AsyncIterator[Event]:
        async def requests() -> AsyncIterator[gateway_pb2.ProcessRequest]:
            yield gateway_pb2.ProcessRequest(config=config)
            with open(path, "rb") as f:
                while data := await asyncio.to_thread(f.read, FILE_PIECE):
                    yield gateway_pb2.ProcessRequest(data=data)

        assembler = _Assembler(outdir)
        call = self._stub.Process(requests(), timeout=self.timeout)
        try:
            async for resp in call:
                if resp.WhichOneof("payload") == "artifact":
                    done = assembler.add(resp.artifact)
                    if done is not None:
                        yield done
                    continue
                event = convert(resp)
                if isinstance(event, VideoFragment):
                    video = assembler.video(event)
                    yield event
                    if video is not None:
                        yield video
                    continue
                if event is not None:
                    if type(event).__name__ == "Done":
                        video = assembler.finish_video()
                        if video is not None:
                            yield video
                    yield event
        finally:
            call.cancel()
            assembler.close()


class _Assembler:
    """Joins artifact pieces (and live video fragments) into files or bytes."""

    def __init__(self, outdir: Path | None) -> None:
        self.outdir = outdir
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
        self.buffers: dict[str, bytearray] = {}
        self.files: dict[str, object] = {}
        self.sizes: dict[str, int] = {}
        self._video_file = None
        self._video_bytes: bytearray | None = None
        self._video_size = 0

    def add(self, piece: gateway_pb2.Artifact) -> Artifact | None:
        name = Path(piece.name).name  # never a path from the wire
        if self.outdir is not None:
            f = self.files.get(name)
            if f is None:
                f = self.files[name] = open(self.outdir / name, "wb")  # noqa: SIM115
            f.write(piece.data)  # type: ignore[attr-defined]
        else:
            self.buffers.setdefault(name, bytearray()).extend(piece.data)
        self.sizes[name] = self.sizes.get(name, 0) + len(piece.data)
        if not piece.last:
            return None
        if self.outdir is not None:
            self.files.pop(name).close()  # type: ignore[attr-defined]
            return Artifact(name, piece.content_type, self.sizes[name], path=self.outdir / name)
        return Artifact(name, piece.content_type, self.sizes[name], data=bytes(self.buffers.pop(name)))

    def video(self, fragment: VideoFragment) -> Artifact | None:
        if self.outdir is not None:
            if self._video_file is None:
                self._video_file = open(self.outdir / "video.mp4", "wb")  # noqa: SIM115
            self._video_file.write(fragment.data)
        else:
            if self._video_bytes is None:
                self._video_bytes = bytearray()
            self._video_bytes.extend(fragment.data)
        self._video_size += len(fragment.data)
        return None

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
            f.close()  # type: ignore[attr-defined]
        self.files.clear()
        if self._video_file is not None:
            self._video_file.close()
