"""Basic Pitch's note creation (`output_to_notes_polyphonic`) on one window of frames.

This is the algorithm of `basic_pitch.note_creation.output_to_notes_polyphonic`, step
for step (the same float64 remaining-energy matrix, the same loop bounds, the same
processing order), restated so that a stream can run it on a window of frames:

* only frames in the *live* range ``[lo, hi)`` of the window hold energy; frames before
  and after are context that the walks may read (as zeros) but never claim;
* onset peaks are computed by the caller (they need the song-wide rescale of the
  inferred onsets, see `decoder.OnsetInference`) and passed in;
* every note records the frames its walks zeroed (to carry them across a forced cut) and
  whether a walk was stopped by the window's end rather than by the energy tolerance.

With a live range cut where no walk can cross (see `decoder.valid_cuts`), decoding each
range gives exactly the notes of whole-file decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transcriber_svc.basicpitch import (
    CONTOUR_BASE_HZ,
    CONTOUR_BINS_PER_SEMITONE,
    MIDI_OFFSET,
    N_CONTOUR_BINS,
    N_PITCHES,
)

ENERGY_TOL = 11                 # output_to_notes_polyphonic's energy_tol (frames)
MAX_FREQ_IDX = N_PITCHES - 1


@dataclass
class WindowNote:
    """A note found in a window; frame indices are local to the window."""

    start: int
    end: int
    freq: int               # 0..87 (MIDI pitch - 21)
    amplitude: float
    from_onset: bool        # False: found by the melodia trick
    zero_start: int         # frames [zero_start, zero_end) of freq-1..freq+1 were zeroed
    zero_end: int
    truncated: bool         # a walk hit the window's end before the energy tolerance

    @property
    def pitch(self) -> int:
        return self.freq + MIDI_OFFSET


def _zero(remaining: np.ndarray, start: int, end: int, freq: int) -> None:
    remaining[start:end, freq] = 0
    if freq < MAX_FREQ_IDX:
        remaining[start:end, freq + 1] = 0
    if freq > 0:
        remaining[start:end, freq - 1] = 0


def decode_window(
    frames: np.ndarray,
    onsets: Sequence[tuple[int, int]],
    lo: int,
    hi: int,
    frame_thresh: float,
    min_note_len: int,
    melodia_trick: bool = True,
    consumed: np.ndarray | None = None,
) -> list[WindowNote]:
    """Decode the notes of one window of Basic Pitch frames.

    Args:
        frames: (n, 88) float32 note activations of the window.
        onsets: (frame, freq) onset peaks at or above the onset threshold, local indices
            inside [lo, hi), sorted by frame then freq (np.where order).
        lo: first live frame (local).
        hi: end of the live frames (local, exclusive).
        frame_thresh: activation a note needs to stay on.
        min_note_len: notes of this many frames or fewer are dropped.
        melodia_trick: also track energy no onset claimed (Basic Pitch's default).
        consumed: optional (n, 88) bool mask of energy already claimed by notes outside
            this window (after a forced cut); zeroed before decoding.

    Returns:
        The notes in Basic Pitch's order: onset notes latest first, then melodia notes.
    """
    n_frames = frames.shape[0]
    remaining = np.zeros(frames.shape)
    remaining[lo:hi] = frames[lo:hi]
    if consumed is not None:
        remaining[consumed] = 0
    notes: list[WindowNote] = []

    for start, freq in reversed(onsets):
        if start >= n_frames - 1:
            continue
        column = remaining[:, freq]
        i = start + 1
        k = 0
        while i < n_frames - 1 and k < ENERGY_TOL:
            if column[i] < frame_thresh:
                k += 1
            else:
                k = 0
            i += 1
        truncated = k < ENERGY_TOL
        i -= k
        if i - start <= min_note_len:
            continue
        _zero(remaining, start, i, freq)
        amplitude = float(np.mean(frames[start:i, freq]))
        notes.append(WindowNote(start, i, freq, amplitude, True, start, i, truncated))

    if not melodia_trick:
        return notes

    while True:
        flat = int(np.argmax(remaining))
        i_mid, freq = divmod(flat, N_PITCHES)
        if not remaining[i_mid, freq] > frame_thresh:
            break
        remaining[i_mid, freq] = 0

        i = i_mid + 1
        k = 0
        while i < n_frames - 1 and k < ENERGY_TOL:
            if remaining[i, freq] < frame_thresh:
                k += 1
            else:
                k = 0
            remaining[i, freq] = 0
            if freq < MAX_FREQ_IDX:
                remaining[i, freq + 1] = 0
            if freq > 0:
                remaining[i, freq - 1] = 0
            i += 1
        truncated = k < ENERGY_TOL
        zero_end = i
        i_end = i - 1 - k

        i = i_mid - 1
        k = 0
        while i > 0 and k < ENERGY_TOL:
            if remaining[i, freq] < frame_thresh:
                k += 1
            else:
                k = 0
            remaining[i, freq] = 0
            if freq < MAX_FREQ_IDX:
                remaining[i, freq + 1] = 0
            if freq > 0:
                remaining[i, freq - 1] = 0
            i -= 1
        zero_start = i + 1
        i_start = i + 1 + k

        if i_end - i_start <= min_note_len:
            continue
        amplitude = float(np.mean(frames[i_start:i_end, freq]))
        notes.append(
            WindowNote(i_start, i_end, freq, amplitude, False, zero_start, zero_end, truncated)
        )
    return notes


def pitch_bends(contours: np.ndarray, notes: Sequence[WindowNote]) -> list[list[int]]:
    """Per-note pitch bends from the contour, as basic_pitch's `get_pitch_bends`.

    Restated here (same window, same bin arithmetic, same argmax; a test compares it with
    the package's) because importing `basic_pitch.note_creation` pulls in mir_eval, scipy.stats,
    librosa, numba and pretty_midi: seconds of start-up for a 25-line function.

    Args:
        contours: (n, 264) contour activations, indexed like the notes' frames.
        notes: the notes.

    Returns:
        For each note, one bend per frame in 1/3-semitone steps.
    """
    bends = []
    for note in notes:
        freq_idx = int(np.round(contour_bin(note.pitch)))
        lo = max(freq_idx - BEND_TOLERANCE, 0)
        hi = min(N_CONTOUR_BINS, freq_idx + BEND_TOLERANCE + 1)
        window = _BEND_WINDOW[
            max(0, BEND_TOLERANCE - freq_idx): _BEND_WINDOW.size
            - max(0, freq_idx - (N_CONTOUR_BINS - BEND_TOLERANCE - 1))
        ]
        shift = BEND_TOLERANCE - max(0, BEND_TOLERANCE - freq_idx)
        weighted = contours[note.start:note.end, lo:hi] * window
        bends.append([int(b) for b in np.argmax(weighted, axis=1) - shift])
    return bends


def contour_bin(pitch: int) -> float:
    """The (fractional) contour bin of a MIDI pitch: basic_pitch's `midi_pitch_to_contour_bin`
    with librosa's `midi_to_hz` written out (same float operations, same result)."""
    hz = 440.0 * (2.0 ** ((np.asarray(pitch) - 69.0) / 12.0))
    return float(12.0 * CONTOUR_BINS_PER_SEMITONE * np.log2(hz / CONTOUR_BASE_HZ))


def _gaussian(length: int, std: float) -> np.ndarray:
    """scipy.signal.windows.gaussian(length, std) (symmetric), without importing scipy.signal."""
    n = np.arange(0, length) - (length - 1.0) / 2.0
    return np.exp(-(n**2) / (2 * std * std))


# get_pitch_bends's defaults: bends within 25 contour bins, weighted by a Gaussian (std 5 bins).
BEND_TOLERANCE = 25
_BEND_WINDOW = _gaussian(2 * BEND_TOLERANCE + 1, 5)
