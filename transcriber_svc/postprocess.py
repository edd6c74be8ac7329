"""Per-instrument clean-up of decoded notes, streamed: range, sanity filter, evidence, octave repair, the bass line.

Every step was kept only because it raised onset F1 (mir_eval, 50 ms, no offsets) on
synthesised stems and on the Slakh2100 stems in ../shared/data (`python -m
evalkit.transcriber_eval`) and on the dev songs of bench/family_accuracy.py.

* **Noise.** Notes more than `noise_margin` semitones (one octave) below the lowest open
  string or above the highest fret are model noise for this instrument (a bass stem's
  kick drum, a guitar's string squeak) and are dropped. Everything else that the tuning
  cannot play is returned as out of range, never dropped silently.
* **Sanity filter (guitar).** Notes whose mean activation (Basic Pitch's amplitude)
  stays under `min_amplitude` are dropped: they are mostly harmonics and bleed. On a
  stem shared with other instruments it is low (0.3), so the quieter strings of a
  strummed chord survive; on an isolated guitar stem 0.4.
* **Guitar, not keys (guitar without an isolated stem).** When the audio is not the
  guitar alone (the DSP fallback's or a 4-stem model's "other": keys, pads and strings
  are in it too), a note is the guitar's only with the evidence of a plucked string: an
  onset at its start (`min_onset`, Basic Pitch's inferred onset; sustained keys, pads and
  strings, and notes found by the melodia trick, mostly have none) and, above
  `high_pitch` (where the keys' right hand and leads play, rarely a rhythm guitar), a
  clear one (`high_min_onset`). A dubious note is left out rather than flood the tab.
  With an isolated guitar stem (htdemucs_6s) the stem is trusted and this is off.
* **Octave repair (bass).** A note whose own activation is weaker than the activation an
  octave below during the note moves down an octave (the model heard the second
  harmonic), when the tuning can play it there, and only when the octave below also
  has at least as much *onset* evidence at the note's start: keys sustaining an octave
  below a high bass line fill the activation there, not the onset.
* **The line (bass).** One note per onset event, chosen by strength, onset, partials
  and the line's continuity and register (`transcriber_svc.bassline`); a note still
  sounding when the next starts is cut short (legato), as a player's next note would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from tabagent.notes import Note
from tabagent.tuning import Tuning
from transcriber_svc.bassline import BassLine, LineSettings
from transcriber_svc.decoder import RawNote

log = logging.getLogger(__name__)

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
        line: the bass-line search (monophonic only).
        min_onset: drop notes with less onset evidence at their start (0 = keep all).
        high_pitch: above this pitch, notes need `high_min_onset` instead.
        high_min_onset: the onset evidence a note above `high_pitch` needs.
    """

    tuning: Tuning
    monophonic: bool = False
    octave_repair: bool = False
    min_amplitude: float = 0.0
    noise_margin: int = 12
    line: LineSettings = LineSettings()
    min_onset: float = 0.0
    high_pitch: int = 127
    high_min_onset: float = 0.0

    @classmethod
    def for_instrument(
        cls, instrument: str, tuning: Tuning, polyphonic: bool = False, isolated: bool = False
    ) -> PostSettings:
        """The defaults measured for `instrument` ("guitar" or "bass").

        Args:
            instrument: "guitar" or "bass".
            tuning: its tuning.
            polyphonic: bass only: keep chords instead of one line.
            isolated: the audio is this instrument alone (a Demucs guitar stem): no
                evidence filter against other instruments.
        """
        if instrument == "bass":
            # Alone in its stem, every onset event is the bass's: the line rarely skips one.
            line = LineSettings(skip_cost=5.0, sounding_skip_cost=5.0) if isolated else LineSettings()
            return cls(tuning, monophonic=not polyphonic, octave_repair=True, line=line)
        if isolated:
            # A clean guitar stem: its weak notes are its own harmonics (measured on the
            # synthesised and Slakh stems, python -m evalkit.transcriber_eval).
            return cls(tuning, min_amplitude=0.4)
        # Shared with keys and the rest: chord tones are quieter than alone, and only
        # plucked notes count (measured on bench/family_accuracy.py's dev songs).
        return cls(tuning, min_amplitude=0.3, min_onset=0.45, high_pitch=76, high_min_onset=0.6)


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
        self._line = BassLine(settings.line) if settings.monophonic else None
        self.dropped_noise = 0
        self.dropped_weak = 0
        self.dropped_unplucked = 0
        self.repaired_octaves = 0

    @property
    def dropped_ghosts(self) -> int:
        """Events the bass line skipped (overtones, other instruments' notes)."""
        return self._line.skipped if self._line is not None else 0

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
            if raw.onset < (s.high_min_onset if raw.pitch > s.high_pitch else s.min_onset):
                self.dropped_unplucked += 1
                continue
            kept.append(self._repair_octave(raw) if s.octave_repair else raw)
        if self._line is not None:
            released, horizon = self._line.push(kept, final_until, ended)
        else:
            released, horizon = kept, final_until
        released.sort(key=lambda r: (r.start, r.pitch))
        playable = [to_note(r) for r in released if s.tuning.playable(r.pitch)]
        unplayable = [to_note(r) for r in released if not s.tuning.playable(r.pitch)]
        return PostResult(playable, unplayable, horizon)

    def _repair_octave(self, raw: RawNote) -> RawNote:
        lower = raw.pitch - 12
        if raw.lower > raw.amplitude and raw.lower_onset >= raw.onset and self.settings.tuning.playable(lower):
            self.repaired_octaves += 1
            return replace(raw, pitch=lower, amplitude=raw.lower, lower=0.0, upper=raw.amplitude,
                           onset=raw.lower_onset, lower_onset=0.0, upper_onset=raw.onset)
        return raw
