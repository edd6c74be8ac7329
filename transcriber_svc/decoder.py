"""Incremental, bounded note decoding of a stream of Basic Pitch frames.

`StreamingDecoder` turns note/onset/contour frames into notes as the frames arrive, with
the defaults of `basic_pitch.inference.predict` (onset 0.5, frame 0.3, 127.70 ms minimum,
inferred onsets, the melodia trick). It holds a bounded buffer of frames and decodes it
region by region:

* **Natural cuts (exact).** A frame index C is a valid cut when no walk of Basic Pitch's
  decoder can cross it: no two active entries (activation >= frame threshold) on either
  side of C lie within ``ENERGY_TOL`` (11) frames of each other at the same or a
  neighbouring pitch, and no onset peak before C is followed at its pitch by an active
  entry at or after C within 11 frames (see `valid_cuts`). Each region between valid
  cuts is decoded on its own (`notecreation.decode_window`) and gives exactly the notes
  whole-file decoding gives there; they are final at once.
* **Forced cuts (the only approximation in the decoding).** When the buffer holds
  `max_buffer_seconds` of frames and no valid cut exists, the whole buffer is decoded,
  a cut C is placed at the quietest frame of its middle part (at least
  `forced_lookahead_seconds` before its end), notes starting before C are committed and
  the energy they claimed after C is carried into the next region (so a note straddling
  C is neither cut nor found twice). Notes still sounding at the buffer's end are held
  and merged with their continuation. Here a note may differ from whole-file decoding,
  because whole-file decoding would also have seen the frames after the buffer.

One more difference is Basic Pitch's, not the cuts': `get_infered_onsets` rescales the
frame differences by the *song-wide* maxima of the onsets and of the differences, which a
stream cannot know in advance. `OnsetInference` uses the running maxima up to each frame
(deterministic, independent of chunking) unless a pinned `onset_scale` is given;
with the whole song's maxima pinned, natural-cut decoding reproduces
`basic_pitch.note_creation.model_output_to_notes` exactly.

Every decision depends only on the frame sequence, never on how it was chunked, so the
output is identical for any block size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from transcriber_svc.basicpitch import (
    FRAMES_PER_SECOND,
    MIDI_OFFSET,
    N_CONTOUR_BINS,
    N_PITCHES,
    frame_times,
    min_note_frames,
)
from transcriber_svc.notecreation import ENERGY_TOL, WindowNote, decode_window, pitch_bends

log = logging.getLogger(__name__)

_BIG = 1 << 40
CONTEXT = ENERGY_TOL + 1    # frames kept before a region: backward walks read 11 of them
ONSET_REACH = 2             # frames either side of a note's start searched for its onset


@dataclass(frozen=True)
class DecoderSettings:
    """Decoding parameters (defaults: basic_pitch.inference.predict's)."""

    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_ms: float = 127.70
    melodia_trick: bool = True
    max_buffer_seconds: float = 20.0
    forced_lookahead_seconds: float = 3.0
    min_region_seconds: float = 0.5
    onset_scale: tuple[float, float] | None = None  # pinned (max onset, max frame diff)
    # While the undecoded region starts within the first `early_seconds` of the stream,
    # a cut is forced once `early_buffer_seconds` are buffered instead of
    # max_buffer_seconds: the song's first notes leave after a few seconds of audio, at
    # the price of a few more forced cuts near its start. 0 = off.
    early_seconds: float = 0.0
    early_buffer_seconds: float = 8.0

    @property
    def min_note_len(self) -> int:
        return min_note_frames(self.min_note_ms)

    @property
    def capacity(self) -> int:
        """Most frames the buffer ever holds."""
        return int(round(self.max_buffer_seconds * FRAMES_PER_SECOND))

    @property
    def early_capacity(self) -> int:
        """Frames buffered before a forced cut in the stream's first `early_seconds`."""
        return min(self.capacity, int(round(self.early_buffer_seconds * FRAMES_PER_SECOND)))

    @property
    def early_frames(self) -> int:
        return int(round(self.early_seconds * FRAMES_PER_SECOND))

    @property
    def lookahead(self) -> int:
        return int(round(self.forced_lookahead_seconds * FRAMES_PER_SECOND))

    @property
    def min_region(self) -> int:
        return max(1, int(round(self.min_region_seconds * FRAMES_PER_SECOND)))

    def check(self) -> None:
        """Raise ValueError for settings the decoder cannot work with."""
        if not 0 < self.onset_threshold <= 1 or not 0 < self.frame_threshold <= 1:
            raise ValueError("onset and frame thresholds must be in (0, 1]")
        if self.min_note_len < 1:
            raise ValueError(f"minimum note length {self.min_note_ms} ms is under one frame")
        if self.capacity < 4 * (self.lookahead + CONTEXT) or self.lookahead < 2 * CONTEXT:
            raise ValueError("max_buffer_seconds must be at least 4x the forced-cut lookahead")
        if self.early_seconds > 0 and self.early_capacity < 2 * (self.lookahead + CONTEXT):
            raise ValueError("early_buffer_seconds must be at least 2x the forced-cut lookahead")


@dataclass
class RawNote:
    """A decoded note: absolute frame indices, seconds, Basic Pitch amplitude and bends."""

    start_frame: int
    end_frame: int
    pitch: int
    amplitude: float
    bends: list[int]            # 1/3 semitone per frame (Basic Pitch's units)
    start: float
    end: float
    from_onset: bool = True
    lower: float = 0.0          # mean activation an octave below during the note
    upper: float = 0.0          # mean activation an octave above during the note
    # Onset evidence at the note's start (Basic Pitch's inferred onsets, peak over the
    # frames around it) at its own pitch and an octave below and above: a sustained
    # note of another instrument fills the activation there, but not the onset.
    onset: float = 0.0
    lower_onset: float = 0.0
    upper_onset: float = 0.0


@dataclass
class DecodeResult:
    """Notes that became final, and the time before which every note has been returned."""

    notes: list[RawNote] = field(default_factory=list)
    final_frame: int = 0
    final_until: float = 0.0


@dataclass
class _Open:
    """A committed note still sounding at a forced buffer end: merged with its continuation."""

    note: RawNote
    frame_sum: float


class OnsetInference:
    """Basic Pitch's inferred onsets and onset peaks, frame by frame.

    ``inferred = max(onset, max_onset * diff / max_diff)`` where diff is the smaller of the
    1- and 2-frame rises of the note activation. The maxima are the running ones up to
    each frame, or the pinned `scale`.
    """

    def __init__(self, onset_threshold: float, scale: tuple[float, float] | None = None) -> None:
        self.onset_threshold = onset_threshold
        self.scale = scale
        self.max_onset = 0.0
        self.max_diff = 0.0
        self.frames_seen = 0
        self._prev = np.zeros((2, N_PITCHES))   # the last two note frames, float64

    def infer(self, note: np.ndarray, onset: np.ndarray) -> np.ndarray:
        """Inferred onsets (float64) of the next frames of the stream."""
        n = note.shape[0]
        cur = note.astype(np.float64)
        ext = np.concatenate([self._prev, cur])
        diff = np.minimum(ext[2:] - ext[1:-1], ext[2:] - ext[:-2])
        diff[diff < 0] = 0
        first = self.frames_seen
        if first < 2:
            diff[: max(0, 2 - first)] = 0
        if self.scale is not None:
            max_on = np.full(n, float(self.scale[0]))
            max_diff = np.full(n, float(self.scale[1]))
        else:
            max_on = np.maximum.accumulate(np.maximum(onset.max(axis=1).astype(np.float64), self.max_onset))
            max_diff = np.maximum.accumulate(np.maximum(diff.max(axis=1), self.max_diff))
            if n:
                self.max_onset, self.max_diff = float(max_on[-1]), float(max_diff[-1])
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (max_on[:, None] * diff) / max_diff[:, None]
        scaled[~np.isfinite(scaled)] = 0.0   # no rise seen yet: nothing to add
        self._prev = ext[-2:]
        self.frames_seen += n
        return np.maximum(onset.astype(np.float64), scaled)


def valid_cuts(active: np.ndarray, peaks: np.ndarray, first: int, last: int) -> np.ndarray:
    """Which cut positions in buffer rows [first, last] no decoder walk can cross.

    Args:
        active: (n, 88) bool, note activation >= frame threshold.
        peaks: (n, 88) bool onset peaks >= onset threshold (rows up to `last` known).
        first: first candidate row (>= 1).
        last: last candidate row; rows up to last + ENERGY_TOL must be known.

    Returns:
        bool array, one per candidate row first..last.
    """
    n = active.shape[0]
    if last < first:
        return np.zeros(0, dtype=bool)
    rows = np.arange(n)[:, None]
    before = np.maximum.accumulate(np.where(active, rows, -_BIG), axis=0)[first - 1 : last]
    after = np.minimum.accumulate(np.where(active, rows, _BIG)[::-1], axis=0)[::-1][first : last + 1]
    onset = np.maximum.accumulate(np.where(peaks, rows, -_BIG), axis=0)[first - 1 : last]
    pad_after = np.pad(after, ((0, 0), (1, 1)), constant_values=_BIG)
    gap = np.minimum(np.minimum(pad_after[:, :-2], pad_after[:, 1:-1]), pad_after[:, 2:]) - before
    crossing = (gap <= ENERGY_TOL).any(axis=1) | ((after - onset) <= ENERGY_TOL).any(axis=1)
    return ~crossing


class StreamingDecoder:
    """Decodes a stream of Basic Pitch frames into final notes with bounded memory.

    Args:
        settings: thresholds and buffer sizes.
    """

    def __init__(self, settings: DecoderSettings | None = None) -> None:
        self.settings = settings or DecoderSettings()
        self.settings.check()
        s = self.settings
        self._onsets = OnsetInference(s.onset_threshold, s.onset_scale)
        self._base = 0                         # absolute index of buffer row 0
        self._note = np.zeros((0, N_PITCHES), np.float32)
        self._contour = np.zeros((0, N_CONTOUR_BINS), np.float32)
        self._inferred = np.zeros((0, N_PITCHES))
        self._peaks = np.zeros((0, N_PITCHES), bool)
        self._consumed = np.zeros((0, N_PITCHES), bool)
        self._region = 0                       # absolute start of the undecoded region
        self._open: list[_Open] = []
        self._ended = False
        self.max_buffered = 0                  # the most frames ever held
        self.natural_cuts = 0
        self.forced_cuts = 0

    @property
    def frames_seen(self) -> int:
        """Frames pushed so far."""
        return self._base + self._note.shape[0]

    @property
    def buffered(self) -> int:
        """Frames held now."""
        return self._note.shape[0]

    def push(self, note: np.ndarray, onset: np.ndarray, contour: np.ndarray) -> DecodeResult:
        """Add the next frames of the stream; return the notes that became final.

        Args:
            note: (k, 88) note activations.
            onset: (k, 88) onset activations.
            contour: (k, 264) contour activations.

        Returns:
            Newly final notes (start order) and the time before which all notes are out.
        """
        if self._ended:
            raise RuntimeError("push() after flush()")
        if not note.shape[0] == onset.shape[0] == contour.shape[0]:
            raise ValueError("note, onset and contour need the same number of frames")
        out: list[RawNote] = []
        pos = 0
        while pos < note.shape[0]:
            room = self._capacity() - self.buffered
            take = min(room, note.shape[0] - pos)
            self._append(note[pos : pos + take], onset[pos : pos + take], contour[pos : pos + take])
            pos += take
            out.extend(self._advance())
        return self._result(out)

    def flush(self) -> DecodeResult:
        """End of stream: decode what is left and return the last notes."""
        if self._ended:
            return self._result([])
        self._ended = True
        out = self._advance()
        n = self.frames_seen
        if n > self._region:
            out.extend(self._decode_region(self._region, n, forced=False))
        self._region = n
        for held in self._open:
            out.append(held.note)
        self._open = []
        self._trim(n)
        return self._result(out)

    # -- buffer ------------------------------------------------------------------------

    def _append(self, note: np.ndarray, onset: np.ndarray, contour: np.ndarray) -> None:
        note = np.asarray(note, np.float32)
        inferred = self._onsets.infer(note, np.asarray(onset, np.float32))
        self._note = np.concatenate([self._note, note])
        self._contour = np.concatenate([self._contour, np.asarray(contour, np.float32)])
        self._inferred = np.concatenate([self._inferred, inferred])
        self._peaks = np.concatenate([self._peaks, np.zeros(note.shape, bool)])
        self._consumed = np.concatenate([self._consumed, np.zeros(note.shape, bool)])
        self.max_buffered = max(self.max_buffered, self.buffered)
        # A frame is a peak once its right neighbour is known.
        first = max(1, self.buffered - note.shape[0] - 1)
        x = self._inferred
        rows = slice(first, self.buffered - 1)
        mid = x[rows]
        self._peaks[rows] = (
            (mid > x[first - 1 : self.buffered - 2])
            & (mid > x[first + 1 : self.buffered])
            & (mid >= self.settings.onset_threshold)
        )

    def _trim(self, keep_from: int) -> None:
        """Drop rows before `keep_from` (absolute)."""
        drop = max(0, keep_from - self._base)
        if drop:
            self._note = self._note[drop:]
            self._contour = self._contour[drop:]
            self._inferred = self._inferred[drop:]
            self._peaks = self._peaks[drop:]
            self._consumed = self._consumed[drop:]
            self._base += drop

    # -- cutting -----------------------------------------------------------------------

    def _advance(self) -> list[RawNote]:
        """Decode every region that is closed; force a cut when the buffer is full."""
        out: list[RawNote] = []
        s = self.settings
        while True:
            n = self.frames_seen
            # A cut needs ENERGY_TOL frames after it to be checked and CONTEXT to decode.
            cut = self._first_valid_cut(self._region + s.min_region, n - CONTEXT)
            if cut is not None:
                out.extend(self._decode_region(self._region, cut, forced=False))
                self.natural_cuts += 1
                self._region = cut
                self._trim(cut - CONTEXT)
                continue
            if not self._ended and self.buffered >= self._capacity():
                out.extend(self._force_cut())
                continue
            return out

    def _capacity(self) -> int:
        """The buffer size that forces a cut: smaller near the stream's start, if so set."""
        s = self.settings
        return s.early_capacity if self._region < s.early_frames else s.capacity

    def _first_valid_cut(self, first: int, last: int) -> int | None:
        if last < first:
            return None
        b = self._base
        active = self._note >= self.settings.frame_threshold
        ok = valid_cuts(active, self._peaks, first - b, last - b)
        hits = np.flatnonzero(ok)
        return int(first + hits[0]) if hits.size else None

    def _force_cut(self) -> list[RawNote]:
        s = self.settings
        n = self.frames_seen
        lo = self._region + (n - self._region) // 2
        hi = max(lo + 1, n - s.lookahead)
        rows = self._note[lo - self._base : hi - self._base]
        count = (rows >= s.frame_threshold).sum(axis=1)
        loudness = rows.sum(axis=1)
        order = np.lexsort((np.arange(rows.shape[0]), loudness, count))
        cut = lo + int(order[0])
        out = self._decode_region(self._region, n, forced=True, cut=cut)
        self.forced_cuts += 1
        log.debug("forced cut at frame %d (%d pitches active)", cut, int(count[order[0]]))
        self._region = cut
        self._trim(cut - CONTEXT)
        return out

    # -- decoding ----------------------------------------------------------------------

    def _decode_region(self, start: int, end: int, forced: bool, cut: int | None = None) -> list[RawNote]:
        """Decode live frames [start, end); with `forced`, commit notes before `cut`."""
        s = self.settings
        b = self._base
        n = self.frames_seen
        w0 = max(b, start - CONTEXT)
        at_end = forced or (self._ended and end == n)     # walks may run to the last frame
        w1 = n if at_end else min(n, end + CONTEXT)
        peaks = self._peaks[start - b : end - b]
        t_idx, f_idx = np.nonzero(peaks)
        onsets = list(zip((t_idx + start - w0).tolist(), f_idx.tolist(), strict=True))
        consumed = self._consumed[w0 - b : w1 - b]
        frames = self._note[w0 - b : w1 - b]
        notes = decode_window(
            frames,
            onsets,
            start - w0,
            end - w0,
            s.frame_threshold,
            s.min_note_len,
            s.melodia_trick,
            consumed if consumed.any() else None,
        )
        limit = cut if forced and cut is not None else end
        kept = [x for x in notes if x.start + w0 < limit]
        if not kept and not self._open:
            return []
        bends = pitch_bends(self._contour[w0 - b : w1 - b], kept)
        times = frame_times(np.array([[w0 + x.start, w0 + x.end] for x in kept], dtype=np.int64).reshape(-1, 2))
        inferred = self._inferred[w0 - b : w1 - b]
        raw = [
            self._raw(x, w0, bend, frames, t, inferred)
            for x, bend, t in zip(kept, bends, times, strict=True)
        ]
        truncated = {id(r) for r, x in zip(raw, kept, strict=True) if forced and x.truncated}
        if forced and cut is not None:
            for x in kept:
                lo = max(cut, w0 + x.zero_start)
                hi = w0 + x.zero_end
                if hi > lo:
                    f = slice(max(0, x.freq - 1), min(N_PITCHES, x.freq + 2))
                    self._consumed[lo - b : hi - b, f] = True
        return self._merge_open(raw, truncated, limit)

    @staticmethod
    def _raw(x: WindowNote, w0: int, bends: list[int], frames: np.ndarray, times: np.ndarray,
             inferred: np.ndarray) -> RawNote:
        def octave(freq: int) -> float:
            if not 0 <= freq < N_PITCHES:
                return 0.0
            return float(np.mean(frames[x.start : x.end, freq]))

        around = inferred[max(0, x.start - ONSET_REACH) : x.start + ONSET_REACH + 1]

        def onset(freq: int) -> float:
            if not 0 <= freq < N_PITCHES or not around.shape[0]:
                return 0.0
            return float(around[:, freq].max())

        return RawNote(
            w0 + x.start, w0 + x.end, x.pitch, x.amplitude, bends, float(times[0]), float(times[1]),
            x.from_onset, octave(x.freq - 12), octave(x.freq + 12),
            onset(x.freq), onset(x.freq - 12), onset(x.freq + 12),
        )

    def _merge_open(self, notes: list[RawNote], truncated: set[int], decoded_until: int) -> list[RawNote]:
        """Join held notes with their continuation; hold newly truncated notes."""
        out: list[RawNote] = []
        still_open: list[_Open] = []
        taken: set[int] = set()
        for held in self._open:
            h = held.note
            match = next(
                (x for x in sorted(notes, key=lambda r: r.start_frame)
                 if id(x) not in taken and x.pitch == h.pitch and not x.from_onset
                 and h.end_frame - ENERGY_TOL <= x.start_frame <= h.end_frame + ENERGY_TOL),
                None,
            )
            if match is not None:
                taken.add(id(match))
                held = self._join(held, match)
                if id(match) in truncated:
                    still_open.append(held)
                else:
                    out.append(held.note)
            elif decoded_until > h.end_frame + ENERGY_TOL:
                out.append(h)
            else:
                still_open.append(held)
        for x in notes:
            if id(x) in taken:
                continue
            if id(x) in truncated:
                total = float(self._note[x.start_frame - self._base : x.end_frame - self._base, x.pitch - MIDI_OFFSET].sum())
                still_open.append(_Open(x, total))
            else:
                out.append(x)
        self._open = still_open
        return out

    def _join(self, held: _Open, cont: RawNote) -> _Open:
        """Extend a held note by the melodia note that continues it after a forced cut."""
        h = held.note
        b = self._base
        f = h.pitch - MIDI_OFFSET
        # A melodia walk ends one frame before an onset walk over the same energy
        # (`i - 1 - k` against `i - k`): end where the held note's own walk would have.
        end = cont.end_frame + (1 if h.from_onset else 0)
        lo, hi = max(h.end_frame, b), max(end, h.end_frame)
        total = held.frame_sum + float(self._note[lo - b : hi - b, f].sum())
        if hi > lo:
            gap = WindowNote(lo - b, hi - b, f, 0.0, False, 0, 0, False)
            extra = pitch_bends(self._contour, [gap])[0]
        else:
            extra = []
        end_time = float(frame_times(np.array([hi]))[0])
        merged = RawNote(
            h.start_frame, hi, h.pitch, total / max(1, hi - h.start_frame), h.bends + extra,
            h.start, end_time, h.from_onset, h.lower, h.upper, h.onset, h.lower_onset, h.upper_onset,
        )
        return _Open(merged, total)

    def _result(self, notes: list[RawNote]) -> DecodeResult:
        final = self._region
        if self._open:
            final = min(final, min(h.note.start_frame for h in self._open))
        notes.sort(key=lambda r: (r.start_frame, r.pitch, r.end_frame))
        return DecodeResult(notes, final, float(frame_times(np.array([final]))[0]))
