"""PCM audio chunks on the wire: encode, decode, validate and resample them as a stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soxr

from tabagent.errors import InvalidInput
from tabagent.v1 import audio_pb2

# One second of 44.1 kHz stereo float32 is 353 KB: far below gRPC's 4 MB message limit.
DEFAULT_CHUNK_SECONDS = 1.0
MAX_CHUNK_BYTES = 2 * 1024 * 1024
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 2


def to_frames(samples: np.ndarray) -> np.ndarray:
    """Return `samples` as a C-contiguous float32 (frames, channels) array."""
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"audio must be 1-D or (frames, channels), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def make_chunk(samples: np.ndarray, sample_rate: int, offset: int) -> audio_pb2.AudioChunk:
    """Pack (frames, channels) float32 samples into an AudioChunk.

    Args:
        samples: (frames, channels) or (frames,) audio.
        sample_rate: rate in Hz.
        offset: index of the first frame in the whole stream.

    Returns:
        The AudioChunk message.
    """
    frames = to_frames(samples)
    return audio_pb2.AudioChunk(
        pcm=frames.astype("<f4", copy=False).tobytes(),
        sample_rate=int(sample_rate),
        channels=int(frames.shape[1]),
        offset=int(offset),
    )


def read_chunk(chunk: audio_pb2.AudioChunk) -> np.ndarray:
    """Unpack an AudioChunk into a (frames, channels) float32 array (no validation)."""
    channels = max(int(chunk.channels), 1)
    data = np.frombuffer(chunk.pcm, dtype="<f4")
    if data.size % channels:
        raise InvalidInput(
            f"audio chunk at frame {chunk.offset} holds {data.size} samples, "
            f"not a multiple of its {channels} channels"
        )
    return data.reshape(-1, channels).astype(np.float32, copy=False)


def iter_chunks(
    samples: np.ndarray,
    sample_rate: int,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    start_offset: int = 0,
) -> Iterator[audio_pb2.AudioChunk]:
    """Split audio into AudioChunks of about `chunk_seconds` each."""
    frames = to_frames(samples)
    step = max(1, int(round(chunk_seconds * sample_rate)))
    for start in range(0, frames.shape[0], step):
        yield make_chunk(frames[start : start + step], sample_rate, start_offset + start)


@dataclass
class ChunkValidator:
    """Checks that a stream of AudioChunks is well-formed and consistent.

    The first chunk fixes the sample rate and channel count; every chunk must then
    continue exactly where the previous one ended, and hold only finite samples.
    """

    max_seconds: float = 0.0        # 0 = unlimited
    max_chunk_bytes: int = MAX_CHUNK_BYTES
    sample_rate: int = 0
    channels: int = 0
    next_offset: int = 0

    def check(self, chunk: audio_pb2.AudioChunk) -> np.ndarray:
        """Validate one chunk and return its samples.

        Raises:
            InvalidInput: with a message naming what is wrong and where.
        """
        if len(chunk.pcm) > self.max_chunk_bytes:
            raise InvalidInput(
                f"audio chunk of {len(chunk.pcm)} bytes exceeds the {self.max_chunk_bytes}-byte limit; "
                "send about one second per chunk"
            )
        if not self.sample_rate:
            if not MIN_SAMPLE_RATE <= chunk.sample_rate <= MAX_SAMPLE_RATE:
                raise InvalidInput(
                    f"sample rate {chunk.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
                )
            if not 1 <= chunk.channels <= MAX_CHANNELS:
                raise InvalidInput(
                    f"{chunk.channels} audio channels: send mono or stereo (downmix first)"
                )
            self.sample_rate = chunk.sample_rate
            self.channels = chunk.channels
            self.next_offset = chunk.offset
        elif chunk.sample_rate != self.sample_rate or chunk.channels != self.channels:
            raise InvalidInput(
                f"audio format changed mid-stream at frame {chunk.offset}: "
                f"{chunk.sample_rate} Hz x{chunk.channels}, was {self.sample_rate} Hz x{self.channels}"
            )
        if chunk.offset != self.next_offset:
            raise InvalidInput(
                f"audio chunk starts at frame {chunk.offset}, expected {self.next_offset}: "
                "chunks must be contiguous and in order"
            )
        samples = read_chunk(chunk)
        if not np.isfinite(samples).all():
            bad = int(np.argmax(~np.isfinite(samples).all(axis=1)))
            at = (chunk.offset + bad) / self.sample_rate
            raise InvalidInput(f"audio holds NaN or infinite samples (first at {at:.3f} s)")
        self.next_offset += samples.shape[0]
        if self.max_seconds and self.next_offset / self.sample_rate > self.max_seconds:
            raise InvalidInput(
                f"audio is longer than the {self.max_seconds:.0f} s this service accepts"
            )
        return samples

    @property
    def seconds(self) -> float:
        """Audio seconds accepted so far."""
        return self.next_offset / self.sample_rate if self.sample_rate else 0.0


class StreamResampler:
    """Converts a stream of (frames, channels) blocks to a target rate and channel count.

    Uses soxr's streaming resampler, which gives the same samples as soxr's (and so
    librosa's default) whole-signal resampling. Downmixing to mono averages channels,
    like librosa.load(mono=True).
    """

    def __init__(self, in_rate: int, out_rate: int, out_channels: int, quality: str = "HQ") -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.out_channels = int(out_channels)
        self._stream: soxr.ResampleStream | None = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, self.out_channels, dtype="float32", quality=quality
            )

    def _channels(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[1] == self.out_channels:
            return frames
        if self.out_channels == 1:
            return frames.mean(axis=1, keepdims=True, dtype=np.float32)
        if frames.shape[1] == 1:
            return np.repeat(frames, self.out_channels, axis=1)
        raise InvalidInput(f"cannot map {frames.shape[1]} channels to {self.out_channels}")

    def process(self, frames: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one block; `last=True` flushes the resampler's tail."""
        block = np.ascontiguousarray(self._channels(to_frames(frames)))
        if self._stream is None:
            return block
        return np.ascontiguousarray(self._stream.resample_chunk(block, last=last))
