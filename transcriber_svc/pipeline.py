"""One stream's path from audio to fingered notes, everything but the model call itself.

    22,050 Hz mono samples ─▶ WindowStream ─▶ windows ─▶ (WindowRunner: the model)
    model outputs ─▶ WindowStream frames ─▶ StreamingDecoder ─▶ PostProcessor
                  ─▶ TechniqueStream (bends, legato, slides, vibrato, let ring; the
                     attacks come from an AttackMeter on the same samples)
                  ─▶ StreamingFingerer ─▶ techniques.verify ─▶ final notes with string and fret

The model call is left to the caller so that windows of several streams can share one
batched forward pass. All methods are synchronous and cheap enough for a worker thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tabagent import techniques
from tabagent.fingering import FingeringResult, StreamingFingerer
from tabagent.notes import Note, sort_notes
from tabagent.techniques import TechniqueStream
from tabagent.tuning import Tuning
from transcriber_svc.attacks import AttackMeter
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE, FRAMES_PER_SECOND
from transcriber_svc.decoder import DecoderSettings, RawNote, StreamingDecoder
from transcriber_svc.model import ModelOutput
from transcriber_svc.postprocess import PostProcessor, PostSettings
from transcriber_svc.streaming import WindowStream


@dataclass(frozen=True)
class EarlyRelease:
    """A shorter fingering look-ahead for the start of a stream, so its first tab events
    leave after seconds rather than after the look-ahead has filled.

    Until the notes are final to `until_seconds`, the fingerer commits an event once it
    is `lag_seconds` old (or `lag_events` events have followed it) instead of its usual
    8 s / 32 events. bench/accuracy.py measured a 3 s / 12-event look-ahead within half a
    point of the 8 s one on fingering agreement; only these first notes are affected.
    """

    until_seconds: float = 20.0
    lag_seconds: float = 2.0
    lag_events: int = 8


# The fingerer is given notes on a fixed time grid (all notes before each grid point, in
# turn), never as the model's batches happen to come: how far it looks ahead when it
# commits an event then depends on the notes alone, so the same audio gets the same
# strings however it was chunked and however the windows were batched.
FINGER_STEP_SECONDS = 0.5


@dataclass
class TrackedNotes:
    """Notes that became final, with their out-of-range notes and the time horizon.

    `final_until`: every note starting before this time has been returned.
    """

    notes: list[Note] = field(default_factory=list)
    out_of_range: list[Note] = field(default_factory=list)
    final_until: float = 0.0

    def extend(self, other: TrackedNotes) -> None:
        self.notes.extend(other.notes)
        self.out_of_range.extend(other.out_of_range)
        self.final_until = max(self.final_until, other.final_until)


class NoteTracker:
    """Turns one part's audio into final, fingered notes (see the module diagram).

    Args:
        tuning: the instrument's tuning.
        instrument: "guitar" or "bass" (chooses the post-processing).
        decoder: decoding settings (Basic Pitch's defaults when omitted).
        post: post-processing settings (the instrument's measured defaults when omitted).
        keep_raw: also keep every decoded note before post-processing in `raw_notes`
            (for evaluation; it grows with the song).
        early: a shorter fingering look-ahead for the stream's first seconds (the
            transcriber service sets one; None keeps the full look-ahead throughout).
    """

    def __init__(
        self,
        tuning: Tuning,
        instrument: str,
        decoder: DecoderSettings | None = None,
        post: PostSettings | None = None,
        keep_raw: bool = False,
        early: EarlyRelease | None = None,
    ) -> None:
        self.tuning = tuning
        self.windows = WindowStream()
        self.decoder = StreamingDecoder(decoder)
        self.post = PostProcessor(post or PostSettings.for_instrument(instrument, tuning))
        self.techniques = TechniqueStream(tuning)
        self.attacks = AttackMeter(AUDIO_SAMPLE_RATE)
        self._strings: dict[int, Note] = {}  # the last note released on each string
        self.fingerer = StreamingFingerer(tuning, weights=techniques.fingering_weights(tuning))
        self.early = early
        self._lag = (self.fingerer.lag_seconds, self.fingerer.lag_events)
        self._held: dict[int, Note] = {}     # pushed to the fingerer, not yet returned
        self._waiting: list[Note] = []       # final, not yet pushed (they start after the grid point)
        self._grid = 0                        # grid points pushed so far
        self.keep_raw = keep_raw
        self.raw_notes: list[RawNote] = []
        self.notes_out = 0
        self.out_of_range_out = 0

    @property
    def audio_seconds(self) -> float:
        """Audio received so far."""
        return self.windows.seconds

    @property
    def decoded_seconds(self) -> float:
        """Audio whose frames reached the decoder."""
        return self.decoder.frames_seen / FRAMES_PER_SECOND

    def push_audio(self, samples: np.ndarray) -> np.ndarray:
        """Add 22,050 Hz mono samples; return the model windows now complete."""
        self.attacks.push(samples)
        return self.windows.push(samples)

    def finish_audio(self) -> np.ndarray:
        """End of audio: return the last (zero-padded) windows."""
        return self.windows.finish()

    def add_outputs(self, output: ModelOutput) -> TrackedNotes:
        """Give the model outputs of the next windows; return the notes now final."""
        frames = self.windows.add_outputs(output.note, output.onset, output.contour)
        decoded = self.decoder.push(frames.note, frames.onset, frames.contour)
        if self.keep_raw:
            self.raw_notes.extend(decoded.notes)
        post = self.post.push(decoded.notes, decoded.final_until)
        marked, until = self._techniques(post.notes, post.final_until, last=False)
        return self._finger(marked, post.out_of_range, until, last=False)

    def flush(self) -> TrackedNotes:
        """End of stream (after every window's outputs were added): the last notes."""
        decoded = self.decoder.flush()
        if self.keep_raw:
            self.raw_notes.extend(decoded.notes)
        post = self.post.push(decoded.notes, decoded.final_until)
        rest = self.post.flush()
        marked, _ = self._techniques(post.notes + rest.notes, float("inf"), last=True)
        out = self._finger(marked, post.out_of_range + rest.out_of_range, float("inf"), last=True)
        out.final_until = max(self.audio_seconds, max((n.end for n in out.notes), default=0.0))
        return out

    def _techniques(self, notes: list[Note], until: float, last: bool) -> tuple[list[Note], float]:
        """Mark techniques (each note's attack measured first); the notes now final, and
        the time before which they all are."""
        for note in notes:
            note.attack = self.attacks.jump(note.start)
        released, horizon = self.techniques.push(notes, until)
        if last:
            released.extend(self.techniques.flush())
        return released, horizon

    def _finger(self, notes: list[Note], unplayable: list[Note], until: float, last: bool) -> TrackedNotes:
        self._waiting.extend(notes)
        result = FingeringResult()
        pushed_until = self._grid * FINGER_STEP_SECONDS
        while last or (self._grid + 1) * FINGER_STEP_SECONDS <= until:
            point = math.inf if last else (self._grid + 1) * FINGER_STEP_SECONDS
            if self.early is not None:
                early = point < self.early.until_seconds
                self.fingerer.lag_seconds, self.fingerer.lag_events = (
                    (self.early.lag_seconds, self.early.lag_events) if early else self._lag)
            now = [n for n in self._waiting if n.start < point]
            self._waiting = [n for n in self._waiting if n.start >= point]
            step = self.fingerer.push(now, point)
            for note in now:
                self._held[id(note)] = note
            if last:
                step.extend(self.fingerer.flush())
            # The fingering may have put a legato pair on two strings: drop what it made impossible.
            self._strings = techniques.verify(step.notes, self._strings)
            result.extend(step)
            if last:
                break
            self._grid += 1
            pushed_until = point
        for note in (*result.notes, *result.out_of_range):
            self._held.pop(id(note), None)
        horizon = until if last else pushed_until
        if self._held:
            horizon = min(horizon, min(n.start for n in self._held.values()))
        out = TrackedNotes(sort_notes(result.notes), sort_notes([*unplayable, *result.out_of_range]), horizon)
        self.notes_out += len(out.notes)
        self.out_of_range_out += len(out.out_of_range)
        return out
