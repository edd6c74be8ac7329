"""Helpers for the video renderer tests: a real in-process server, song requests, MP4 probes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from evalkit.examples import Song
from tabagent import tuning
from tabagent.serving import ServiceServer, channel_options
from tabagent.v1 import audio_pb2, video_pb2, video_pb2_grpc
from video_svc.config import VideoConfig
from video_svc.holder import ModelHolder
from video_svc.server import create_server
from video_svc.session import song_requests

FFPROBE = "/usr/bin/ffprobe"
FFMPEG = "/usr/bin/ffmpeg"


@dataclass
class RunningServer:
    server: ServiceServer
    port: int
    backend: ModelHolder
    channel: grpc.aio.Channel

    @property
    def stub(self) -> video_pb2_grpc.VideoRendererStub:
        return video_pb2_grpc.VideoRendererStub(self.channel)


@asynccontextmanager
async def running_server(
    config: VideoConfig | None = None, backend: ModelHolder | None = None, warm: bool = True
) -> AsyncIterator[RunningServer]:
    """Start a real grpc.aio server on 127.0.0.1:0, warm it, yield a client channel."""
    config = config or VideoConfig(diffusion="off")
    backend = backend or ModelHolder(config)
    server, port = create_server(config, backend, address="127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        if warm:
            await server.warm()
        yield RunningServer(server, port, backend, channel)
    finally:
        await channel.close()
        await server.stop(None)


def song_parts(song: Song) -> dict[str, tuple[audio_pb2.Tuning, list[audio_pb2.Note]]]:
    """The song's parts as (tuning, notes) messages."""
    return {
        name: (tuning.standard(name).to_proto(), [n.to_proto() for n in notes])
        for name, notes in song.parts.items()
    }


def song_beats(song: Song) -> video_pb2.Beats:
    """The song's true beats (make_song starts its bars at 0.5 s, four beats a bar)."""
    beat = 60.0 / song.bpm
    times = list(np.arange(0.5, song.seconds, beat))
    return video_pb2.Beats(tempo=song.bpm, times=times, beats_per_bar=4, downbeats=times[::4])


def requests_for(song: Song, config: video_pb2.RenderConfig, beats: bool = True) -> list[video_pb2.RenderRequest]:
    """The whole song as one stream's messages."""
    return song_requests(config, song.mix, song.sample_rate, song_parts(song), song_beats(song) if beats else None)


@dataclass
class Rendered:
    """What one Render call returned."""

    info: video_pb2.VideoInfo | None = None
    fragments: list[video_pb2.VideoFragment] = field(default_factory=list)
    progress: list[audio_pb2.Progress] = field(default_factory=list)
    summary: video_pb2.RenderSummary | None = None

    @property
    def data(self) -> bytes:
        return b"".join(f.data for f in self.fragments)

    def save(self, path: Path) -> Path:
        path.write_bytes(self.data)
        return path


async def render(stub: video_pb2_grpc.VideoRendererStub, requests: Iterable[video_pb2.RenderRequest]) -> Rendered:
    """Run one Render call to the end."""
    out = Rendered()
    async for resp in stub.Render(iter(list(requests)), timeout=120):
        kind = resp.WhichOneof("payload")
        if kind == "info":
            out.info = resp.info
        elif kind == "fragment":
            out.fragments.append(resp.fragment)
        elif kind == "progress":
            out.progress.append(resp.progress)
        elif kind == "summary":
            out.summary = resp.summary
    return out


async def expect_error(
    stub: video_pb2_grpc.VideoRendererStub,
    requests: Iterable[video_pb2.RenderRequest],
    code: grpc.StatusCode,
    half_close: bool = True,
) -> str:
    """Run a call that must fail with `code`; returns the status details.

    Writes with the call's own API and reads the status from the call. A refusal that
    comes before the server reads anything (UNAVAILABLE, RESOURCE_EXHAUSTED) is tested
    with no writes at all (`[]`, half_close=False): grpc aio clients may report a write
    racing the server's early status as INTERNAL (grpc/grpc#36066).
    """
    call = stub.Render(timeout=60)
    try:
        for request in requests:
            await call.write(request)
        if half_close:
            await call.done_writing()
        while (await call.read()) is not grpc.aio.EOF:
            pass
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass
    status = await call.code()
    assert status == code, (status, await call.details())
    return await call.details() or ""


def ffprobe(path: Path) -> dict:
    """ffprobe's JSON for the file's streams and format."""
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def decode_audio(path: Path, rate: int, channels: int) -> np.ndarray:
    """The file's audio track decoded by ffmpeg as (frames, channels) float32."""
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-vn", "-f", "f32le", "-ac", str(channels), "-ar", str(rate), "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, channels)


def decode_frames(path: Path, wanted: set[int] | None = None) -> dict[int, np.ndarray]:
    """Decoded RGB frames by index (frame i starts at media time i / fps)."""
    import av

    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate)
        for frame in container.decode(stream):
            index = int(round(float(frame.time) * fps))
            if wanted is None or index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24", src_colorspace="ITU709")
    return frames
