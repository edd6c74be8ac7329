"""The interface every separator implements: model info, stem streams and their input conversion."""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

import numpy as np

from tabagent.audio import StreamResampler, to_frames
from tabagent.errors import BadConfig, Cancelled
from tabagent.serving.model import ModelInfo

MODEL_RATE = 44_100
MODEL_CHANNELS = 2

# Each stream returns a dict of stem name -> (frames, channels) float32 blocks, all
# stems the same length and starting at the same frame (the stream's output so far).
StemBlocks = dict[str, np.ndarray]


class StemStream(abc.ABC):
    """One song's separation, fed input blocks in order and returning finished stem audio.

    Subclasses implement `_push` and `_finish` at the model rate and channel count;
    this base converts the caller's rate and channels with a streaming resampler and
    lets another thread cancel the work between model segments.
    """

    def __init__(
        self,
        stems: Sequence[str],
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
        model_rate: int = MODEL_RATE,
        model_channels: int = MODEL_CHANNELS,
    ) -> None:
        self.stems = tuple(stems)
        self.sample_rate = model_rate
        self.channels = model_channels
        self._convert: StreamResampler | None = None
        if in_rate != model_rate or in_channels != model_channels:
            self._convert = StreamResampler(in_rate, model_rate, model_channels)
        self._cancel = threading.Event()
        self._finished = False
        self.segments = 0          # model segments (or STFT blocks) computed so far
        self.frames_in = 0         # frames received at the model rate
        self.frames_out = 0        # frames of each stem returned so far

    def cancel(self) -> None:
        """Ask the stream to stop at the next segment boundary (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise Cancelled when the caller has gone away; called between segments."""
        if self._cancel.is_set():
            raise Cancelled("separation cancelled by the caller")

    def push(self, frames: np.ndarray) -> StemBlocks:
        """Feed the next block of input and return the stem audio that became final.

        Args:
            frames: (frames, channels) float32 at the rate and channel count the
                stream was opened with.

        Returns:
            Stem name -> (n, channels) float32, n possibly 0, same n for every stem.
        """
        if self._finished:
            raise RuntimeError("push after finish")
        self.check_cancelled()
        block = to_frames(frames)
        if self._convert is not None:
            block = self._convert.process(block)
        self.frames_in += block.shape[0]
        out = self._push(block)
        self.frames_out += _length(out)
        return out

    def finish(self) -> StemBlocks:
        """Signal the end of the input and return the remaining stem audio."""
        if self._finished:
            raise RuntimeError("finish called twice")
        self.check_cancelled()
        self._finished = True
        if self._convert is not None:
            tail = self._convert.process(np.zeros((0, self.channels), np.float32), last=True)
            self.frames_in += tail.shape[0]
            head = self._push(tail)
            rest = self._finish()
            out = {name: np.concatenate([head[name], rest[name]]) for name in self.stems}
        else:
            out = self._finish()
        self.frames_out += _length(out)
        return out

    def collect(self) -> StemBlocks:
        """Return the stem audio that became final without new input.

        A pipelined stream (see separator_svc.streaming) finishes segments in worker
        threads; its caller waits on `oldest()` and then collects what it finalised.
        """
        if self._finished:
            return self.empty()
        self.check_cancelled()
        out = self._drain()
        self.frames_out += _length(out)
        return out

    def oldest(self) -> Future[Any] | None:
        """The oldest work still running in the background, to wait on (None: none)."""
        return None

    def _drain(self) -> StemBlocks:
        return self.empty()

    def empty(self) -> StemBlocks:
        """Zero-length blocks for every stem."""
        return {name: np.zeros((0, self.channels), np.float32) for name in self.stems}

    @abc.abstractmethod
    def _push(self, block: np.ndarray) -> StemBlocks:
        """Process (frames, model channels) at the model rate."""

    @abc.abstractmethod
    def _finish(self) -> StemBlocks:
        """Flush everything still held."""


def _length(blocks: StemBlocks) -> int:
    return next(iter(blocks.values())).shape[0] if blocks else 0


class SeparatorModel(abc.ABC):
    """A warm separator: opens one StemStream per song."""

    info: ModelInfo
    sources: tuple[str, ...]
    segment_seconds: float
    sample_rate: int = MODEL_RATE
    channels: int = MODEL_CHANNELS
    # Stem names served from another source (e.g. "guitar" from "other").
    aliases: Mapping[str, str] = MappingProxyType({})

    def stems_for(self, requested: Sequence[str]) -> tuple[str, ...]:
        """Validate requested stem names; empty means every source.

        Raises:
            BadConfig: naming the unknown stems and the ones available.
        """
        if not requested:
            return self.sources
        unknown = [s for s in requested if s not in self.sources and s not in self.aliases]
        if unknown:
            raise BadConfig(
                f"unknown stem(s) {', '.join(map(repr, unknown))} for model {self.info.name}; "
                f"it produces {', '.join([*self.sources, *self.aliases])}"
            )
        return tuple(dict.fromkeys(requested))

    @abc.abstractmethod
    def open_stream(
        self,
        stems: Sequence[str],
        overlap: float = 0.25,
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
    ) -> StemStream:
        """Start separating one song.

        Args:
            stems: stem names to return (validated with `stems_for`).
            overlap: fraction of a segment shared by neighbouring segments.
            in_rate: sample rate of the blocks that will be pushed.
            in_channels: channels of the blocks that will be pushed (1 or 2).

        Returns:
            A fresh StemStream.
        """

    @abc.abstractmethod
    def warm_up(self) -> None:
        """Run one forward pass so the first request pays no start-up cost."""

    def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release threads or devices held by the model (default: nothing)."""
