"""Shared helpers for the separator tests: tiny bags on disk, in-process servers, a gRPC client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import numpy as np
import torch

from separator_svc.base import SeparatorModel
from separator_svc.config import SeparatorConfig
from separator_svc.holder import ModelHolder
from separator_svc.server import create_server
from separator_svc.tiny import build_tiny_bag, build_tiny_hub_cache
from tabagent.audio import iter_chunks
from tabagent.serving import ServiceServer, channel_options
from tabagent.v1 import audio_pb2, separator_pb2, separator_pb2_grpc

TINY_SEGMENT = 2.0
RATE = 44_100
_ROOT = Path(tempfile.mkdtemp(prefix="tabagent-separator-tests-"))


@functools.cache
def tiny_repo(name: str = "htdemucs") -> Path:
    """A demucs local repo folder holding a tiny `name` bag (built once per session)."""
    return build_tiny_bag(_ROOT / f"repo-{name}", name, segment=TINY_SEGMENT)


@functools.cache
def tiny_hub(name: str = "htdemucs") -> Path:
    """A Hugging Face hub cache holding a tiny `name` bag (built once per session)."""
    return build_tiny_hub_cache(_ROOT / f"hub-{name}", name, segment=TINY_SEGMENT, seed=1)


def empty_dir(name: str) -> Path:
    """An existing folder with no weights in it."""
    path = _ROOT / f"empty-{name}"
    path.mkdir(exist_ok=True)
    return path


def noise_song(n: int, seed: int = 0, channels: int = 2) -> np.ndarray:
    """`n` frames of noise and tones: (n, channels) float32 at 44.1 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    tones = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    mix = 0.05 * rng.standard_normal((n, channels)) + tones[:, None]
    return mix.astype(np.float32)


def reference(model: SeparatorModel, mix: np.ndarray, overlap: float = 0.25) -> dict[str, np.ndarray]:
    """demucs.apply.apply_model on the whole song: source -> (frames, channels)."""
    from demucs.apply import apply_model

    bag = model.bag  # type: ignore[attr-defined]
    with torch.no_grad():
        out = apply_model(
            bag, torch.from_numpy(mix.T.copy())[None], shifts=0, split=True, overlap=overlap,
            device=model.device,  # type: ignore[attr-defined]
        )[0]
    return {name: out[k].cpu().numpy().T for k, name in enumerate(bag.sources)}


def server_config(**overrides: object) -> SeparatorConfig:
    """A config for in-process servers (port 0, no metrics port)."""
    return replace(SeparatorConfig(port=0, metrics_port=0, host="127.0.0.1"), **overrides)  # type: ignore[arg-type]


@dataclass
class RunningServer:
    """An in-process server and a channel to it."""

    server: ServiceServer
    port: int
    store: ModelHolder
    channel: grpc.aio.Channel
    stub: separator_pb2_grpc.SeparatorStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = separator_pb2_grpc.SeparatorStub(self.channel)


@contextlib.asynccontextmanager
async def running_server(
    store: ModelHolder, config: SeparatorConfig | None = None, warm: bool = True
) -> AsyncIterator[RunningServer]:
    """Start a real grpc.aio server on 127.0.0.1:0 with `store`, warm it, yield a client."""
    config = config or server_config()
    server, port = create_server(config, store, address="127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        if warm:
            await server.warm()
        yield RunningServer(server, port, store, channel)
    finally:
        await channel.close()
        await server.stop(None)


def requests(
    mix: np.ndarray,
    rate: int = RATE,
    chunk_seconds: float = 1.0,
    **config: object,
) -> list[separator_pb2.SeparateRequest]:
    """A config message followed by the song's audio chunks."""
    msgs = [separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(**config))]  # type: ignore[arg-type]
    msgs += [separator_pb2.SeparateRequest(audio=c) for c in iter_chunks(mix, rate, chunk_seconds)]
    return msgs


@dataclass
class Separation:
    """What a Separate call returned."""

    info: separator_pb2.SeparatorInfo | None = None
    stems: dict[str, list[audio_pb2.AudioChunk]] = field(default_factory=dict)
    progress: list[audio_pb2.Progress] = field(default_factory=list)
    summary: separator_pb2.SeparateSummary | None = None
    kinds: list[str] = field(default_factory=list)

    def audio(self, stem: str) -> np.ndarray:
        """The stem's chunks joined into (frames, channels) float32."""
        chunks = self.stems[stem]
        return np.concatenate(
            [np.frombuffer(c.pcm, "<f4").reshape(-1, c.channels) for c in chunks]
        )


async def separate(
    stub: separator_pb2_grpc.SeparatorStub,
    msgs: Iterable[separator_pb2.SeparateRequest],
    timeout: float = 60.0,
) -> Separation:
    """Run one Separate call to the end and collect its responses.

    Like a careful client, it sends the config, then waits for SeparatorInfo (or the
    end of the call) before streaming audio. grpc's asyncio client can report
    INTERNAL instead of the server's status when a write is in flight as the server
    ends the call (grpc/grpc#36066); a server that refuses a stream does so before
    the info, so no audio write is in flight then.
    """
    result = Separation()
    msgs = list(msgs)
    answered = asyncio.Event()

    async def send() -> AsyncIterator[separator_pb2.SeparateRequest]:
        for i, msg in enumerate(msgs):
            if i == 1:
                await answered.wait()
                if result.info is None:
                    return
            yield msg
            await asyncio.sleep(0)

    call = stub.Separate(send(), timeout=timeout)
    try:
        async for response in call:
            kind = response.WhichOneof("payload")
            result.kinds.append(kind)
            if kind == "info":
                result.info = response.info
                answered.set()
            elif kind == "stem":
                result.stems.setdefault(response.stem.stem, []).append(response.stem.audio)
            elif kind == "progress":
                result.progress.append(response.progress)
            else:
                result.summary = response.summary
    finally:
        answered.set()
    return result


async def expect_error(
    stub: separator_pb2_grpc.SeparatorStub,
    msgs: Sequence[separator_pb2.SeparateRequest],
    code: grpc.StatusCode,
) -> str:
    """Run a call that must fail with `code`; returns its details."""
    try:
        await separate(stub, msgs, timeout=30.0)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == code, f"expected {code}, got {exc.code()}: {exc.details()}"
        return exc.details() or ""
    raise AssertionError(f"expected {code}, the call succeeded")
