"""Basic Pitch's windowing, streamed: 22,050 Hz mono blocks in, model windows and frames out.

`basic_pitch.inference.run_inference` pads the song with ``overlap_len / 2`` zeros,
cuts windows of AUDIO_N_SAMPLES samples every ``AUDIO_N_SAMPLES - 30 * 256`` samples
(zero-padding the last), drops 15 frames at each side of every window's output,
concatenates, and trims to ``floor(n_samples * 86 / 22050)`` frames. `WindowStream` does
the same on a stream: it returns each window as soon as its samples have arrived, and
releases output frames as soon as they are certain to survive the final trim. It never
runs the model itself, so the caller may batch windows of several streams into one
forward pass (see `runner.WindowRunner`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transcriber_svc.basicpitch import (
    ANNOTATIONS_FPS,
    AUDIO_N_SAMPLES,
    AUDIO_SAMPLE_RATE,
    HOP_SIZE,
    N_CONTOUR_BINS,
    N_OVERLAPPING_FRAMES,
    N_PITCHES,
    OVERLAP_LEN,
)

_TRIM = N_OVERLAPPING_FRAMES // 2


def kept_frames(n_samples: int) -> int:
    """Frames run_inference keeps for a song of `n_samples` samples at 22,050 Hz."""
    return int(np.floor(n_samples * (ANNOTATIONS_FPS / AUDIO_SAMPLE_RATE)))


@dataclass
class Frames:
    """Consecutive model frames: note and onset (k, 88), contour (k, 264)."""

    note: np.ndarray
    onset: np.ndarray
    contour: np.ndarray

    @classmethod
    def empty(cls) -> Frames:
        return cls(
            np.zeros((0, N_PITCHES), np.float32),
            np.zeros((0, N_PITCHES), np.float32),
            np.zeros((0, N_CONTOUR_BINS), np.float32),
        )

    def __len__(self) -> int:
        return int(self.note.shape[0])

    def __getitem__(self, rows: slice) -> Frames:
        return Frames(self.note[rows], self.onset[rows], self.contour[rows])

    @classmethod
    def concat(cls, parts: list[Frames]) -> Frames:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.note for p in parts]),
            np.concatenate([p.onset for p in parts]),
            np.concatenate([p.contour for p in parts]),
        )


class WindowStream:
    """Cuts a stream of 22,050 Hz mono samples into Basic Pitch windows, in order.

    Use: ``windows = push(block)``; run the model on them; ``add_outputs(...)`` gives
    the frames now final. At the end ``finish()`` returns the last (zero-padded)
    windows; their outputs go through ``add_outputs`` too.
    """

    def __init__(self) -> None:
        # Buffer of the padded signal from `_start` (absolute padded index) onwards.
        self._buffer = np.zeros(OVERLAP_LEN // 2, np.float32)
        self._start = 0
        self._next_window = 0      # padded index of the next window to cut
        self.samples = 0           # original samples received
        self.windows_cut = 0
        self.windows_done = 0
        self._released = 0         # frames handed out
        self._pending: list[Frames] = []
        self._finished = False

    @property
    def seconds(self) -> float:
        """Audio seconds received."""
        return self.samples / AUDIO_SAMPLE_RATE

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the windows now complete, shape (k, AUDIO_N_SAMPLES, 1)."""
        if self._finished:
            raise RuntimeError("push() after finish()")
        block = np.asarray(samples, np.float32).reshape(-1)
        self.samples += block.size
        self._buffer = np.concatenate([self._buffer, block])
        return self._cut(final=False)

    def finish(self) -> np.ndarray:
        """End of stream: the remaining windows, zero-padded like run_inference's last."""
        if self._finished:
            return np.zeros((0, AUDIO_N_SAMPLES, 1), np.float32)
        self._finished = True
        return self._cut(final=True)

    def _cut(self, final: bool) -> np.ndarray:
        end = self._start + self._buffer.size          # padded samples known
        windows = []
        while True:
            lo = self._next_window - self._start
            if self._next_window + AUDIO_N_SAMPLES <= end:
                windows.append(self._buffer[lo : lo + AUDIO_N_SAMPLES])
            elif final and self._next_window < end:
                tail = self._buffer[lo:]
                windows.append(np.pad(tail, (0, AUDIO_N_SAMPLES - tail.size)))
            else:
                break
            self._next_window += HOP_SIZE
        out = (
            np.stack(windows)[:, :, None]
            if windows
            else np.zeros((0, AUDIO_N_SAMPLES, 1), np.float32)
        )
        # Keep only what later windows still need.
        drop = min(self._next_window, end) - self._start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._start += drop
        self.windows_cut += len(windows)
        return out

    def add_outputs(self, note: np.ndarray, onset: np.ndarray, contour: np.ndarray) -> Frames:
        """Give the model outputs of the next windows (in order); return final frames.

        Args:
            note: (k, 172, 88) note activations of the next k windows.
            onset: (k, 172, 88) onset activations.
            contour: (k, 172, 264) contour activations.

        Returns:
            The frames that run_inference would keep and that are now known.
        """
        k = note.shape[0]
        if self.windows_done + k > self.windows_cut:
            raise ValueError("outputs for more windows than were cut")
        self.windows_done += k
        if k:
            sl = slice(_TRIM, -_TRIM)
            self._pending.append(
                Frames(
                    note[:, sl].reshape(-1, N_PITCHES),
                    onset[:, sl].reshape(-1, N_PITCHES),
                    contour[:, sl].reshape(-1, N_CONTOUR_BINS),
                )
            )
        limit = kept_frames(self.samples)
        pending = Frames.concat(self._pending)
        take = max(0, min(len(pending), limit - self._released))
        if self._finished and self.windows_done == self.windows_cut:
            self._pending = []       # the rest falls past the song's end
        else:
            self._pending = [pending[take:]] if take < len(pending) else []
        self._released += take
        return pending[:take]
