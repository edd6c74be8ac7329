"""The bass line: one note per onset, chosen by evidence that survives other instruments, streamed.

A bass stem (Demucs's, or the DSP fallback's low band) also holds the keys' left hand, a
piano or organ sustaining an octave below a high bass line, the guitar's low strings, and
the bass's own harmonics. Basic Pitch hears all of them. Picking, at each onset, the
loudest note or a note an octave below (the activation there) puts a D3-A3 bass line an
octave low whenever keys sustain underneath it. Instead, notes starting together (within
`cluster_seconds`) are one event, and the line is the path through the events that
best explains them (a Viterbi search with a fixed look-ahead):

* **strength**: a candidate's mean activation times its onset evidence (Basic Pitch's
  inferred onset at its start: a note struck there, not one sustained into it);
* **partials**: a candidate with a comparably strong candidate a harmonic interval below
  it (12, 19, 24 semitones) in the same event is taken for that note's overtone;
* **chord roots**: a candidate with a comparably strong candidate a fifth above it in the
  same event is a chord's root (a guitar's power chord in the stem: a bass's own partials
  never put a note a fifth above it, only a twelfth), so it costs `chord_cost`, and the
  notes above it are not taken for its overtones. A bass line pitched above the
  guitar's power chords otherwise lost to their roots (an octave below its notes);
* **continuity and register**: moving from the previous note of the line costs in
  proportion to the leap beyond `free_leap` semitones, and an exact octave leap costs
  `octave_cost` more: a line stays in its register, so the keys' left hand an octave
  below does not capture it, nor does an overtone an octave above;
* an event may be skipped (`skip_cost`), as when only other instruments start there;
  cheaply (`sounding_skip_cost`) while the line's note still sounds and the event's
  notes all lie more than an octave above it: Basic Pitch merges a repeated bass note
  into one, and a guitar's arpeggio over it is not the bass moving (a bass line an
  octave above a sustained organ note still is).

The decision for an event is made once the events of the next `lookahead` seconds are
known, from exactly those (so the result does not depend on how the notes were batched).
Measured on the dev songs of bench/family_accuracy.py (docs/ACCURACY.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from transcriber_svc.decoder import RawNote

HARMONIC_BELOW = (12, 19, 24)
CHORD_FIFTH = 7      # semitones from a chord's root to its fifth (no partial of the root)
MIN_DURATION = 0.01


@dataclass(frozen=True)
class LineSettings:
    """Weights of the bass-line search (log-strength units)."""

    cluster_seconds: float = 0.08
    min_amplitude: float = 0.3
    onset_weight: float = 1.0
    overtone_ratio: float = 0.6      # a candidate below with this share of the strength ...
    overtone_cost: float = 0.8       # ... makes this one its overtone
    free_leap: float = 5.0           # semitones moved at no cost
    leap_cost: float = 0.05          # per semitone beyond free_leap
    octave_cost: float = 2.0         # an exact octave or two-octave leap
    skip_cost: float = 2.5
    sounding_skip_cost: float = 1.5  # ... while the line's note sounds under the event's notes
    lookahead: float = 2.0           # seconds of later events seen before deciding
    beam: int = 12
    chord_cost: float = 2.0          # a candidate with another a fifth above it: a chord's root (0 = off)


@dataclass
class _State:
    score: float
    last: int | None                 # pitch of the line's latest note
    choices: list[int]               # per undecided event: index of the chosen note, -1 = skipped
    last_end: float = 0.0            # when the line's latest note ends


class BassLine:
    """Streams decoded notes (in start order, final up to a horizon) into one bass line.

    Args:
        settings: search weights.
    """

    def __init__(self, settings: LineSettings | None = None) -> None:
        self.s = settings or LineSettings()
        self._waiting: list[RawNote] = []          # notes not yet grouped into an event
        self._events: list[list[RawNote]] = []     # undecided events
        self._states = [_State(0.0, None, [])]
        self._last: RawNote | None = None          # decided, awaiting the next note's start
        self.skipped = 0

    def push(self, notes: Sequence[RawNote], final_until: float, ended: bool = False) -> tuple[list[RawNote], float]:
        """Add notes final up to `final_until`; return the line's notes now decided and the new horizon."""
        s = self.s
        self._waiting.extend(n for n in notes if n.amplitude >= s.min_amplitude)
        self._waiting.sort(key=lambda r: (r.start, r.pitch))
        released: list[RawNote] = []
        while self._waiting:
            head = self._waiting[0]
            if not ended and head.start + s.cluster_seconds > final_until:
                break      # a later note could still join this event
            size = 1
            while size < len(self._waiting) and self._waiting[size].start - head.start < s.cluster_seconds:
                size += 1
            event, self._waiting = self._waiting[:size], self._waiting[size:]
            # Events whose look-ahead is now complete are decided before this one is added.
            while self._events and event[0].start >= self._events[0][0].start + s.lookahead:
                released.extend(self._decide())
            self._add(event)
        if ended:
            while self._events:
                released.extend(self._decide())
            if self._last is not None:
                released.append(self._last)
                self._last = None
        horizon = final_until
        if self._waiting:
            horizon = min(horizon, self._waiting[0].start)
        if self._events:
            horizon = min(horizon, self._events[0][0].start)
        if self._last is not None:
            horizon = min(horizon, self._last.start)
        return released, horizon

    # -- the search ------------------------------------------------------------------

    def _strength(self, note: RawNote) -> float:
        return max(note.amplitude, 1e-3) * (0.4 + self.s.onset_weight * note.onset)

    def _emissions(self, event: list[RawNote]) -> list[float]:
        s = self.s
        strengths = [self._strength(n) for n in event]
        roots = {n.pitch for n, sn in zip(event, strengths, strict=True)
                 if any(o.pitch - n.pitch == CHORD_FIFTH and so >= s.overtone_ratio * sn
                        for o, so in zip(event, strengths, strict=True))} if s.chord_cost > 0 else set()
        out = []
        for n, strength in zip(event, strengths, strict=True):
            score = math.log(strength)
            if any((n.pitch - o.pitch) in HARMONIC_BELOW and so >= s.overtone_ratio * strength
                   and o.pitch not in roots
                   for o, so in zip(event, strengths, strict=True)):
                score -= s.overtone_cost
            if n.pitch in roots:
                score -= s.chord_cost
            out.append(score)
        return out

    def _add(self, event: list[RawNote]) -> None:
        s = self.s
        emissions = self._emissions(event)
        best: dict[tuple[int, int | None], _State] = {}

        def offer(state: _State) -> None:
            key = (state.choices[-1], state.last if state.choices[-1] < 0 else None)
            if key not in best or best[key].score < state.score:
                best[key] = state

        start = min(n.start for n in event)
        for state in self._states:
            sounding = state.last_end > start + s.cluster_seconds and state.last is not None
            above = sounding and min(n.pitch for n in event) - (state.last or 0) > 12
            skip = s.sounding_skip_cost if above else s.skip_cost
            offer(_State(state.score - skip, state.last, [*state.choices, -1], state.last_end))
            for i, (note, emission) in enumerate(zip(event, emissions, strict=True)):
                move = 0.0
                if state.last is not None:
                    leap = abs(note.pitch - state.last)
                    move = s.leap_cost * max(0.0, leap - s.free_leap) + (s.octave_cost if leap in (12, 24) else 0.0)
                offer(_State(state.score + emission - move, note.pitch, [*state.choices, i], note.end))
        self._states = sorted(best.values(), key=lambda st: -st.score)[: s.beam]
        self._events.append(event)

    def _decide(self) -> list[RawNote]:
        """Fix the oldest undecided event to the best path's choice; return notes now final."""
        event = self._events.pop(0)
        choice = self._states[0].choices[0]
        self._states = [replace(st, choices=st.choices[1:]) for st in self._states if st.choices[0] == choice]
        if choice < 0:
            self.skipped += 1
            return []
        start = min(n.start for n in event)
        note = event[choice]
        note = replace(note, start=start, end=max(note.end, start + MIN_DURATION))
        out = []
        if self._last is not None:
            last = self._last
            if last.end > note.start:
                last = replace(last, end=max(last.start + MIN_DURATION, note.start))
            out.append(last)
        self._last = note
        return out
