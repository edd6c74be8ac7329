"""Per-instrument clean-up of decoded notes, streamed: range, sanity filter, octave repair, monophony.

Every step was kept only because it raised onset F1 (mir_eval, 50 ms, no offsets) on
synthesised stems and on the Slakh2100 stems in ../shared/data; `python -m
evalkit.transcriber_eval` prints those numbers.

* **Noise.** Notes more than `noise_margin` semitones (one octave) below the lowest open
  string or above the highest fret are model noise for this instrument (a bass stem's
  kick drum, a guitar's string squeak) and are dropped. Everything else that the tuning
  cannot play is returned as out of range, never dropped silently.
* **Sanity filter (guitar).** Notes whose mean activation (Basic Pitch's amplitude)
  stays under `min_amplitude` are dropped: they are mostly harmonics and bleed.
* **Octave repair (bass).** A note whose own activation is weaker than the activation an
  octave below during the note (weak fundamental evidence: the model heard the second
  harmonic) moves down an octave, when the tuning can play it there.
* **Monophony (bass).** Notes starting within `cluster_seconds` of each other are one
  event: the strongest is kept (a note a harmonic interval below it wins when it has at
  least `ghost_ratio` of its strength) and takes the cluster's earliest onset. A note
  starting while a stronger one sounds, a harmonic interval above it and under
  `ghost_ratio` of its strength, is a ghost and dropped; otherwise it cuts the sounding
  note short (legato), as a player's next note would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from tabagent.notes import Note
from tabagent.tuning import Tuning
from transcriber_svc.decoder import RawNote

log = logging.getLogger(__name__)

HARMONIC_INTERVALS = frozenset({12, 19, 24, 28, 31})   # harmonics 2, 3, 4, 5, 6 above a root
MIN_DURATION = 0.01


@dataclass(frozen=True)
class PostSettings:
    """Post-processing of one part.

    Args:
        tuning: the instrument's tuning (capo and max fret included).
        monophonic: one note at a time (bass default).
        octave_repair: move notes with weak fundamental evidence down an octave.
        min_amplitude: drop notes with a weaker mean activation (0 = keep all).
        noise_margin: semitones outside the playable range beyond which notes are noise.
        cluster_seconds: onsets closer than this are one event (monophonic only).
        ghost_ratio: strength ratio that decides between a root and its harmonic.
    """

    tuning: Tuning
    monophonic: bool = False
    octave_repair: bool = False
    min_amplitude: float = 0.0
    noise_margin: int = 12
    cluster_seconds: float = 0.08
    ghost_ratio: float = 0.6

    @classmethod
    def for_instrument(cls, instrument: str, tuning: Tuning, polyphonic: bool = False) -> PostSettings:
        """The defaults measured for `instrument` ("guitar" or "bass")."""
        if instrument == "bass":
            return cls(tuning, monophonic=not polyphonic, octave_repair=True)
        return cls(tuning, min_amplitude=0.4)


@dataclass
class PostResult:
    """Notes now final (in start order), those the tuning cannot play, and the horizon."""

    notes: list[Note]
    out_of_range: list[Note]
    final_until: float


def to_note(raw: RawNote) -> Note:
    """A tabagent Note from a decoded note (bends in semitones, velocity = amplitude)."""
    level = min(1.0, max(0.0, float(raw.amplitude)))
    return Note(
        pitch=int(raw.pitch),
        start=float(raw.start),
        end=float(max(raw.end, raw.start + MIN_DURATION)),
        velocity=level,
        pitch_bend=[b / 3.0 for b in raw.bends],
        confidence=level,
    )


class PostProcessor:
    """Applies `PostSettings` to a stream of decoded notes, holding back only what the
    next notes could still change (an open onset cluster, the last sounding note)."""

    def __init__(self, settings: PostSettings) -> None:
        self.settings = settings
        tuning = settings.tuning
        self._low = tuning.lowest - settings.noise_margin
        self._high = tuning.highest + settings.noise_margin
        self._waiting: list[RawNote] = []
        self._last: RawNote | None = None
        self.dropped_noise = 0
        self.dropped_weak = 0
        self.dropped_ghosts = 0
        self.repaired_octaves = 0

    def push(self, notes: list[RawNote], final_until: float) -> PostResult:
        """Process decoded notes that are final up to `final_until` seconds."""
        return self._run(notes, final_until, ended=False)

    def flush(self) -> PostResult:
        """End of stream: release everything held."""
        return self._run([], float("inf"), ended=True)

    def _run(self, notes: list[RawNote], final_until: float, ended: bool) -> PostResult:
        s = self.settings
        kept = []
        for raw in notes:
            if not self._low <= raw.pitch <= self._high:
                self.dropped_noise += 1
                continue
            if raw.amplitude < s.min_amplitude:
                self.dropped_weak += 1
                continue
            kept.append(self._repair_octave(raw) if s.octave_repair else raw)
        if s.monophonic:
            released, horizon = self._monophonic(kept, final_until, ended)
        else:
            released, horizon = kept, final_until
        released.sort(key=lambda r: (r.start, r.pitch))
        playable = [to_note(r) for r in released if s.tuning.playable(r.pitch)]
        unplayable = [to_note(r) for r in released if not s.tuning.playable(r.pitch)]
        return PostResult(playable, unplayable, horizon)

    def _repair_octave(self, raw: RawNote) -> RawNote:
        lower = raw.pitch - 12
        if raw.lower > raw.amplitude and self.settings.tuning.playable(lower):
            self.repaired_octaves += 1
            return replace(raw, pitch=lower, amplitude=raw.lower, lower=0.0, upper=raw.amplitude)
        return raw

    def _monophonic(self, notes: list[RawNote], final_until: float, ended: bool) -> tuple[list[RawNote], float]:
        s = self.settings
        waiting = sorted(self._waiting + notes, key=lambda r: (r.start, r.pitch))
        released: list[RawNote] = []
        last = self._last
        while waiting:
            head = waiting[0]
            if not ended and head.start + s.cluster_seconds > final_until:
                break       # a later note could still join this cluster
            size = 1
            while size < len(waiting) and waiting[size].start - head.start < s.cluster_seconds:
                size += 1
            cluster, waiting = waiting[:size], waiting[size:]
            best = self._strongest(cluster)
            start = min(r.start for r in cluster)
            best = replace(best, start=start, end=max(best.end, start + MIN_DURATION))
            if last is not None and last.end > best.start:
                if (best.pitch - last.pitch) in HARMONIC_INTERVALS and best.amplitude < s.ghost_ratio * last.amplitude:
                    self.dropped_ghosts += 1
                    continue
                last = replace(last, end=max(last.start + MIN_DURATION, best.start))
            if last is not None:
                released.append(last)
            last = best
        if last is not None and (ended or last.end <= final_until):
            released.append(last)
            last = None
        self._waiting, self._last = waiting, last
        horizon = final_until
        if waiting:
            horizon = min(horizon, waiting[0].start)
        if last is not None:
            horizon = min(horizon, last.start)
        return released, horizon

    def _strongest(self, cluster: list[RawNote]) -> RawNote:
        best = max(cluster, key=lambda r: r.amplitude)
        for r in sorted(cluster, key=lambda r: r.pitch):
            if (best.pitch - r.pitch) in HARMONIC_INTERVALS and r.amplitude >= self.settings.ghost_ratio * best.amplitude:
                return r
        return best
