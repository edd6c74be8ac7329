"""Streaming decode of an uploaded file (any format FFmpeg reads) into 44.1 kHz stereo blocks.

The upload is spooled to a temporary file as it arrives (bounded memory), and a decoder
thread reads it while it grows: streamable formats (WAV, MP3, FLAC, Ogg, ...) are decoded
as the bytes come in; MP4-family files, whose index may sit at the end, are decoded once
the upload is complete. Multichannel audio is downmixed to stereo and every rate is
resampled to 44.1 kHz. The file's content decides its format, never its name.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tabagent.errors import AudioTooLong, InvalidInput, TabAgentError, UnreadableAudio

log = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
CHANNELS = 2
PROBE_BYTES = 256 * 1024


class _Aborted(Exception):
    """The consumer went away; the decoder thread stops."""


class Spool:
    """An upload written to a temporary file while readers follow it as it grows."""

    def __init__(self, directory: str | None = None, max_bytes: int = 0) -> None:
        fd, name = tempfile.mkstemp(prefix="tabagent-upload-", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self.max_bytes = max_bytes
        self.size = 0
        self.complete = False
        self.aborted = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def write(self, data: bytes) -> None:
        """Append bytes (from the event loop; a plain buffered file write)."""
        if self.max_bytes and self.size + len(data) > self.max_bytes:
            raise AudioTooLong(
                f"upload is larger than the {self.max_bytes // (1024 * 1024)} MiB limit"
            )
        self._file.write(data)
        self._file.flush()
        with self._cond:
            self.size += len(data)
            self._cond.notify_all()

    def finish(self) -> None:
        """Mark the upload complete."""
        self._file.close()
        with self._cond:
            self.complete = True
            self._cond.notify_all()

    def abort(self, error: BaseException | None = None) -> None:
        """Wake and stop every reader; `error` (e.g. an upload over the limit) is reported
        by the decoder instead of the audio."""
        with self._cond:
            if error is not None and self.error is None:
                self.error = error
            self.aborted = True
            self._cond.notify_all()

    def wait(self, size: int) -> int:
        """Block until `size` bytes exist or the upload is complete; returns bytes available."""
        with self._cond:
            while not self.aborted and not self.complete and self.size < size:
                self._cond.wait(0.5)
            if self.aborted:
                raise _Aborted()
            return self.size

    def wait_complete(self) -> None:
        self.wait(1 << 62)

    def head(self, n: int) -> bytes:
        """The first `n` bytes (fewer if the upload is shorter), waiting for them."""
        self.wait(n)
        with open(self.path, "rb") as f:
            return f.read(n)

    def close(self) -> None:
        """Remove the temporary file."""
        self.abort()
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class _GrowingReader(io.RawIOBase):
    """A forward-only reader of a Spool that blocks until bytes arrive."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._f = open(spool.path, "rb")  # noqa: SIM115 - closed in close()
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buf)
        available = self.spool.wait(self.pos + want)
        n = min(want, available - self.pos)
        if n <= 0:
            return 0
        data = self._f.read(n)
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    sample = head[:4096]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return printable / len(sample) > 0.95


def _is_mp4_family(head: bytes) -> bool:
    return len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")


def _wav_declared_seconds(path: Path) -> float | None:
    """Seconds a RIFF/WAVE header promises (FFmpeg trusts the file size instead)."""
    data = _wav_data(path)
    if data is None or data[1] in (0, 0xFFFFFFFF):
        return None
    return data[1] / data[2]


def _header_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    """What an open container's headers declare, in seconds (0 when they declare nothing)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else 0.0


def declared_seconds(path: Path) -> float | None:
    """The duration the file's headers declare, or None when they declare none."""
    wav = _wav_declared_seconds(path)
    if wav is not None:
        return wav
    try:
        with av.open(str(path)) as c:
            streams = c.streams.audio
            if not streams:
                return None
            return _header_seconds(c, streams[0]) or None
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def _wav_data(path: Path) -> tuple[int, int, int] | None:
    """(data offset, declared data bytes, byte rate) of a RIFF/WAVE file, None if not one."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack("<I", head[pos + 16 : pos + 20])[0]
        if cid == b"data":
            return (pos + 8, size, byte_rate) if byte_rate else None
        pos += 8 + size + (size & 1)
    return None


def wav_shortfall(path: Path) -> tuple[float, float] | None:
    """(declared, held) seconds of a WAV whose data chunk promises more than the file holds."""
    data = _wav_data(path)
    if data is None or data[1] in (0, 0xFFFFFFFF):
        return None
    offset, declared, rate = data
    held = max(0, path.stat().st_size - offset)
    if held >= declared:
        return None
    return declared / rate, held / rate


def _holds_audio_at(path: Path, seconds: float) -> bool:
    """Whether the file really has audio at `seconds` (seeking there and decoding a frame)."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return False
            stream = c.streams.audio[0]
            c.seek(int(seconds * 1_000_000), any_frame=False, backward=True)
            for frame in c.decode(stream):
                if frame.time is not None and frame.time >= seconds - 30.0:
                    return True
            return False
    except (av.error.FFmpegError, OSError, ValueError, EOFError):
        return False


def check_declared(path: Path, declared: float | None, max_seconds: float) -> None:
    """Refuse, truthfully, a complete file whose header declares more than `max_seconds`.

    A header can lie: a 20 KB WAV may declare three hours. Such a file is truncated, not
    too long, and is told so; only a file that really holds audio past the limit is too long.

    Raises:
        UnreadableAudio: (HTTP 415) the data ends long before what the header declares.
        AudioTooLong: (HTTP 413) the file really holds more than `max_seconds`.
    """
    short = wav_shortfall(path)
    if short is not None and short[1] < short[0] - max(0.5, 0.02 * short[0]):
        raise UnreadableAudio(f"the file is truncated: its header declares {short[0]:.1f} s but it holds "
                              f"only {short[1]:.1f} s of audio")
    if not max_seconds or declared is None or declared <= max_seconds:
        return
    if not _holds_audio_at(path, max_seconds):
        raise UnreadableAudio(f"the file is truncated: its header declares {declared:.0f} s but its data ends "
                              f"before {max_seconds:.0f} s")
    raise AudioTooLong(f"the song is {declared:.0f} s long; the limit is {max_seconds:.0f} s")


@dataclass
class DecodeStats:
    seconds: float = 0.0
    source_rate: int = 0
    source_channels: int = 0
    codec: str = ""
    container: str = ""
    declared_seconds: float | None = None


class UploadDecoder:
    """Decodes a Spool in a thread and hands out (frames, 2) float32 blocks at 44.1 kHz.

    Args:
        spool: the upload being written.
        block_seconds: size of the blocks handed out.
        max_seconds: refuse audio longer than this (0 = no limit).
        queue_blocks: blocks buffered ahead of the consumer (backpressure beyond).
    """

    def __init__(self, spool: Spool, block_seconds: float = 1.0, max_seconds: float = 0.0,
                 queue_blocks: int = 8) -> None:
        self.spool = spool
        self.block = int(block_seconds * SAMPLE_RATE)
        self.max_seconds = max_seconds
        self.stats = DecodeStats()
        self._queue: asyncio.Queue[np.ndarray | BaseException | None] = asyncio.Queue(queue_blocks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="decode", daemon=True)
        self._thread.start()

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """The decoded audio, block by block; raises the decoder's error at its point."""
        if self._thread is None:
            self.start()
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Stop decoding (the consumer is gone)."""
        self._stop.set()
        self.spool.abort()
        while not self._queue.empty():  # unblock a put() in progress
            self._queue.get_nowait()

    # -- decoder thread ------------------------------------------------------------
    def _put(self, item: np.ndarray | BaseException | None) -> None:
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        while True:
            try:
                fut.result(timeout=0.5)
                return
            except TimeoutError:
                if self._stop.is_set():
                    fut.cancel()
                    raise _Aborted() from None

    def _run(self) -> None:
        try:
            self._decode()
            self._put(None)
        except _Aborted:
            if self.spool.error is not None and not self._stop.is_set():
                self._safe_put(self.spool.error)
            return
        except TabAgentError as exc:
            self._safe_put(exc)
        except Exception as exc:  # an FFmpeg error we did not classify
            log.warning("decode failed: %s", exc)
            self._safe_put(UnreadableAudio(f"the file could not be decoded as audio ({exc})"))

    def _safe_put(self, exc: BaseException) -> None:
        try:
            self._put(exc)
        except _Aborted:
            pass

    def _open(self) -> tuple[av.container.InputContainer, bool]:
        head = self.spool.head(PROBE_BYTES)
        if not head:
            raise UnreadableAudio("the file is empty (0 bytes): send an audio file")
        if _is_mp4_family(head):
            # MP4/M4A may keep its index at the end: decode once fully uploaded.
            self.spool.wait_complete()
            try:
                return av.open(str(self.spool.path), "r"), True
            except av.error.FFmpegError as exc:
                raise self._unreadable(head, exc) from None
        reader = _GrowingReader(self.spool)
        try:
            return av.open(reader, "r", options={"probesize": str(PROBE_BYTES)}), False
        except av.error.FFmpegError as exc:
            reader.close()
            if self.spool.complete:
                raise self._unreadable(head, exc) from None
            # Some formats need to seek while probing: try again on the whole file.
            self.spool.wait_complete()
            try:
                return av.open(str(self.spool.path)), True
            except av.error.FFmpegError as exc2:
                raise self._unreadable(head, exc2) from None

    def _unreadable(self, head: bytes, exc: Exception) -> UnreadableAudio:
        if _looks_like_text(head):
            return UnreadableAudio(
                "the file is not audio: it looks like text. Send a WAV, MP3, FLAC, Ogg or M4A file"
            )
        return UnreadableAudio(
            f"the file is not in an audio format FFmpeg can read ({exc.__class__.__name__}); "
            "send a WAV, MP3, FLAC, Ogg or M4A file"
        )

    def _decode(self) -> None:
        container, seekable = self._open()
        try:
            if not container.streams.audio:
                raise UnreadableAudio("the file holds no audio stream")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            self.stats.source_rate = int(ctx.sample_rate or 0)
            self.stats.source_channels = int(ctx.channels or 0)
            self.stats.codec = ctx.name or ""
            self.stats.container = container.format.name if container.format else ""
            declared = _header_seconds(container, stream) or _wav_declared_seconds(self.spool.path) or 0.0
            self.stats.declared_seconds = declared or None
            if self.max_seconds and declared > self.max_seconds:
                # Refused before a single block leaves (no model works on it), and truthfully:
                # the whole upload decides between "too long" and "truncated".
                self.spool.wait_complete()
                check_declared(self.spool.path, declared, self.max_seconds)
            resampler = av.AudioResampler(format="flt", layout="stereo", rate=SAMPLE_RATE)
            pending: list[np.ndarray] = []
            pending_frames = 0
            total = 0
            error: Exception | None = None
            try:
                for frame in container.decode(stream):
                    if self._stop.is_set():
                        raise _Aborted()
                    for out in resampler.resample(frame):
                        block = out.to_ndarray().reshape(-1, CHANNELS)
                        pending.append(block)
                        pending_frames += block.shape[0]
                    while pending_frames >= self.block:
                        total = self._emit(pending, self.block, total)
                        pending_frames -= self.block
            except av.error.FFmpegError as exc:
                error = exc  # reported below as truncation/corruption
            for out in resampler.resample(None):
                block = out.to_ndarray().reshape(-1, CHANNELS)
                pending.append(block)
                pending_frames += block.shape[0]
            if pending_frames:
                total = self._emit(pending, pending_frames, total)
            self.stats.seconds = total / SAMPLE_RATE
            self._check_complete(error)
        finally:
            container.close()

    def _emit(self, pending: list[np.ndarray], n: int, total: int) -> int:
        joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
        block, rest = joined[:n], joined[n:]
        pending.clear()
        if rest.shape[0]:
            pending.append(rest)
        if not np.isfinite(block).all():
            at = (total + int(np.argmax(~np.isfinite(block).all(axis=1)))) / SAMPLE_RATE
            raise InvalidInput(f"the audio holds NaN or infinite samples (first at {at:.2f} s)")
        total += block.shape[0]
        if self.max_seconds and total / SAMPLE_RATE > self.max_seconds:
            raise AudioTooLong(f"the song is longer than the {self.max_seconds:.0f} s limit")
        self._put(np.ascontiguousarray(block, dtype=np.float32))
        return total

    def _check_complete(self, error: Exception | None) -> None:
        self.spool.wait_complete()
        decoded = self.stats.seconds
        declared = declared_seconds(self.spool.path)
        self.stats.declared_seconds = declared
        if decoded <= 0:
            raise UnreadableAudio("no audio could be decoded from the file (is it truncated?)")
        short = declared is not None and decoded < declared - max(0.5, 0.02 * declared)
        if error is not None or short:
            promised = f"its header promises {declared:.1f} s but " if declared else ""
            raise UnreadableAudio(
                f"the file is truncated or corrupt: {promised}only {decoded:.1f} s could be decoded"
            )
