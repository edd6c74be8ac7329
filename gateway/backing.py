"""Backing tracks: the song without one part (the mix minus that part's stem), written as it streams.

The chain writes `original.flac` (the decoded song, what the player syncs to) block by
block, and for each part `no-<part>.flac`: for every stem chunk the separator returns,
the same samples of the mix minus the stem. Only the mix the separator has not caught up
with is held (it trails the decoder by the queues between them: seconds, whatever the
song's length); a separator that falls further behind than `MAX_HELD_SECONDS` turns the
backing tracks off with a warning instead of growing memory.

With the DSP fallback separator the stems are rough, and so are the backing tracks: the
chain's warning and each track's `fallback` entry in result.json say so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.artifacts import StemWriter

log = logging.getLogger(__name__)

MAX_HELD_SECONDS = 120.0
ORIGINAL = "original.flac"


def backing_name(part: str) -> str:
    """The artifact of the song without `part`."""
    return f"no-{part}.flac"


@dataclass
class Track:
    """One backing track being written: the part it leaves out and the stem removed."""

    part: str
    stem: str
    path: Path
    writer: StemWriter
    frames: int = 0


@dataclass
class BackingTracks:
    """Mix-minus-stem writers for a song's parts, fed the mix and the stems as they stream.

    Args:
        workdir: where the FLAC files go.
        sample_rate: the mix's rate (the stems must come at it).
        max_held_seconds: the most mix held for a stem that lags.
    """

    workdir: Path
    sample_rate: int
    max_held_seconds: float = MAX_HELD_SECONDS
    tracks: dict[str, Track] = field(default_factory=dict)
    by_stem: dict[str, list[Track]] = field(default_factory=dict)
    held_peak: int = 0            # the most mix frames held at once (bench/bench_memory.py reads it)
    failed: str = ""
    _blocks: deque[tuple[int, np.ndarray]] = field(default_factory=deque)
    _held: int = 0
    _next: dict[str, int] = field(default_factory=dict)   # stem -> first frame not yet seen
    # The mix arrives on the event loop while stems are subtracted in a worker thread.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_part(self, part: str, stem: str) -> Path:
        """Start the backing track without `part`, whose audio is the separator's `stem`."""
        path = self.workdir / backing_name(part)
        track = Track(part, stem, path, StemWriter(path, self.sample_rate))
        self.tracks[part] = track
        self.by_stem.setdefault(stem, []).append(track)
        self._next.setdefault(stem, 0)
        return path

    @property
    def active(self) -> bool:
        return bool(self.tracks) and not self.failed

    def add_mix(self, block: np.ndarray, offset: int) -> None:
        """Hold the next block of the mix (frames, channels) that starts at frame `offset`."""
        if self.failed:
            return
        with self._lock:
            self._blocks.append((offset, block))
            self._held += block.shape[0]
            self.held_peak = max(self.held_peak, self._held)
        if self._held > self.max_held_seconds * self.sample_rate:
            self.fail(f"the separator fell more than {self.max_held_seconds:.0f} s behind the decoder")

    def add_stem(self, stem: str, samples: np.ndarray, offset: int) -> None:
        """Write mix minus `samples` (frames from `offset` of `stem`) to its backing tracks."""
        tracks = self.by_stem.get(stem)
        if not tracks or self.failed:
            return
        n = samples.shape[0]
        if n == 0:
            return
        with self._lock:
            mix = self._mix(offset, n)
        if mix is None:
            self.fail(f"stem {stem!r} came for audio the gateway no longer holds (frame {offset})")
            return
        stem_audio = samples if samples.shape[1] == mix.shape[1] else np.broadcast_to(
            samples.mean(axis=1, keepdims=True), mix.shape)
        rest = mix - stem_audio
        for track in tracks:
            track.writer.write(rest)
            track.frames += n
        self._next[stem] = max(self._next[stem], offset + n)
        with self._lock:
            self._trim()

    def _mix(self, offset: int, n: int) -> np.ndarray | None:
        """Frames [offset, offset + n) of the held mix (zeros past its end: a stem's tail
        may run a few frames beyond the song)."""
        if self._blocks and offset < self._blocks[0][0]:
            return None
        out: np.ndarray | None = None
        for start, block in self._blocks:
            end = start + block.shape[0]
            if end <= offset:
                continue
            if start >= offset + n:
                break
            if out is None:
                out = np.zeros((n, block.shape[1]), dtype=np.float32)
            a, b = max(start, offset), min(end, offset + n)
            out[a - offset:b - offset] = block[a - start:b - start]
        if out is None:
            channels = self._blocks[0][1].shape[1] if self._blocks else 2
            out = np.zeros((n, channels), dtype=np.float32)
        return out

    def _trim(self) -> None:
        """Drop the mix every stem has passed."""
        done = min(self._next.values())
        while self._blocks and self._blocks[0][0] + self._blocks[0][1].shape[0] <= done:
            _, block = self._blocks.popleft()
            self._held -= block.shape[0]

    def drop_mix(self) -> None:
        """Let go of the held mix (no track needs it)."""
        with self._lock:
            self._blocks.clear()
            self._held = 0

    def fail(self, reason: str) -> None:
        """Stop the backing tracks (their files are removed by `close`)."""
        if not self.failed:
            self.failed = reason
            log.warning("backing tracks off: %s", reason)
        self.drop_mix()

    def close(self) -> dict[str, Path]:
        """Finish the files; returns part -> path of each complete backing track."""
        out = {}
        for part, track in self.tracks.items():
            try:
                track.writer.close()
            except Exception:  # a writer that failed mid-way leaves no artifact
                log.exception("backing track %s could not be finished", track.path.name)
                self.failed = self.failed or f"{track.path.name} could not be written"
            if self.failed or track.frames == 0:
                track.path.unlink(missing_ok=True)
            else:
                out[part] = track.path
        self.drop_mix()
        return out

    def describe(self, separator: Any, shared: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        """result.json's `backing_tracks`: per part, its file, the stem removed and how good
        the separation behind it is.

        Args:
            separator: the separator's ModelInfo (name, fallback, message).
            shared: stem -> parts transcribed from it (a stem shared by two parts leaves
                both out of each backing track).
        """
        fallback = bool(getattr(separator, "fallback", False))
        out = {}
        for part, track in self.tracks.items():
            others = [p for p in shared.get(track.stem, []) if p != part]
            note = f"the song minus the separator's {track.stem!r} stem"
            if others:
                note += f" (which {', '.join(others)} is also transcribed from, so it is gone too)"
            if fallback:
                note += "; made with the DSP fallback separator (no Demucs weights), so parts of " \
                        f"{part} remain audible and some other instruments are thinned"
            out[part] = {"file": track.path.name, "stem": track.stem, "without": [part, *others],
                         "separator": getattr(separator, "name", ""), "fallback": fallback, "note": note}
        return out


class SongAudio:
    """The audio artifacts a song's chain writes as it streams: original.flac and the
    backing tracks. The chain calls `mix` for every decoded block, `parts` when the
    separator says which stems it serves, `stem` for every stem chunk, and `close` at the end.

    Args:
        workdir: where the files go.
        sample_rate: the decoded mix's rate.
        wanted: artifact name -> whether the client wants it.
    """

    def __init__(self, workdir: Path, sample_rate: int, wanted: Callable[[str], bool]) -> None:
        self.workdir = workdir
        self.sample_rate = sample_rate
        self.wanted = wanted
        self.original: StemWriter | None = None
        self.original_path = workdir / ORIGINAL
        self.backing = BackingTracks(workdir, sample_rate)
        self.separator: Any = None
        self.shared: dict[str, list[str]] = {}
        self._hold_mix = True      # until the separator's info says which parts get a track
        self._frames = 0
        # Encoding runs in worker threads, which a cancelled song does not stop: every use
        # of the writers takes this lock, and nothing is written once they are closed.
        self._lock = threading.Lock()
        self._closed = False

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if not self._closed:
                fn(*args)

    async def mix(self, block: np.ndarray, offset: int) -> None:
        """The next decoded block (frames, channels) at frame `offset`."""
        if self._closed:
            return
        if self.wanted(ORIGINAL):
            if self.original is None:
                self.workdir.mkdir(parents=True, exist_ok=True)
                self.original = StemWriter(self.original_path, self.sample_rate)
            await asyncio.to_thread(self._guarded, self.original.write, block)
        self._frames = offset + block.shape[0]
        if self._hold_mix:
            self.backing.add_mix(block, offset)

    def parts(self, routes: dict[str, list[str]], separator: Any, sample_rate: int) -> None:
        """Start a backing track per wanted part, from the stems the parts are routed to."""
        self.separator = separator
        self.shared = routes
        if sample_rate and sample_rate != self.sample_rate:
            self.backing.fail(f"the stems come at {sample_rate} Hz, the mix at {self.sample_rate} Hz")
        for stem, parts in routes.items():
            for part in parts:
                if self.wanted(backing_name(part)) and not self.backing.failed:
                    self.workdir.mkdir(parents=True, exist_ok=True)
                    self.backing.add_part(part, stem)
        if not self.backing.tracks:
            self._hold_mix = False
            self.backing.drop_mix()

    async def stem(self, stem: str, samples: np.ndarray, offset: int) -> None:
        """A chunk of a stem at frame `offset`."""
        if self.backing.active and stem in self.backing.by_stem:
            await asyncio.to_thread(self._guarded, self.backing.add_stem, stem, samples, offset)
            if self.backing.failed:
                self._hold_mix = False

    async def close(self) -> tuple[dict[str, Path], dict[str, dict[str, Any]], str]:
        """Finish every file.

        Returns:
            (artifact name -> path of each file written whole, result.json's
            `backing_tracks`, why the backing tracks are missing or "").
        """
        paths: dict[str, Path] = {}
        done = await asyncio.to_thread(self._close_all)
        if self.original is not None:
            paths[ORIGINAL] = self.original_path
        info = self.backing.describe(self.separator, self.shared)
        paths.update({path.name: path for path in done.values()})
        return paths, {p: i for p, i in info.items() if p in done}, self.backing.failed

    def _close_all(self) -> dict[str, Path]:
        with self._lock:
            self._closed = True
            if self.original is not None:
                self.original.close()
            return self.backing.close()

    def abort(self) -> None:
        """Close whatever is still open after a failed song (its folder is removed anyway);
        waits for a write a worker thread is doing."""
        with self._lock:
            self._closed = True
            writers = [self.original] + [t.writer for t in self.backing.tracks.values()]
            for w in writers:
                if w is not None and not w.closed:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001 - best effort on a song that already failed
                        log.debug("closing %s after a failure", w, exc_info=True)
            self.backing.drop_mix()
