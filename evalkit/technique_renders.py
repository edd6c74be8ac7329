"""Guitar phrases with known playing techniques, rendered two ways, to score technique detection.

A phrase is a lead line of picked notes, bends (1/4, 1/2, full and 1 1/2 steps), vibrato,
hammer-ons, pull-offs and slides, with let-ring arpeggios between, and negatives that
look alike (picked legato pairs a few semitones apart, plain held notes). Each pluck is
a `Stroke`: a picked pitch and what the fretting hand does while it sounds (`Move`s:
a step for a hammer-on or pull-off, a fast glide for a slide, a slow rise for a bend;
a vibrato LFO). The reference notes follow from the strokes: a hammer-on, pull-off or
slide starts a new note with that technique; a bend or vibrato marks the note it bends.

Renders:

* `render_synth`: `evalkit.synth`'s additive plucked voice with the pitch curve
  integrated into each harmonic's phase; hammer-ons and pull-offs add a little energy
  (the fretting finger's tap), softer than a pick.
* `render_fluidsynth`: General MIDI guitars from the FluidR3 soundfont (FluidSynth;
  `scripts/install.sh --bench`), one MIDI note per pluck and the pitch wheel (range set
  to 12 semitones with RPN 0) for every move and vibrato: legato with no new attack at
  all. Arpeggios play on a second channel without the wheel.

`phrases(split)` gives the dev and held-out sets: different seeds, and for the soundfont
different guitar programs, so a threshold tuned on dev meets unseen timbres and lines.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit import synth
from tabagent.notes import Note

SAMPLE_RATE = synth.SAMPLE_RATE
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
WHEEL_RANGE = 12            # semitones of the pitch wheel (set by RPN 0)
WHEEL_STEP = 0.005          # seconds between pitch-wheel messages of a glide or vibrato
BEND_STEPS = (0.5, 1.0, 2.0, 3.0)   # semitones: 1/4, 1/2, full, 1 1/2 steps
# General MIDI guitar programs (0-based) for each split: held-out never shares one with dev.
PROGRAMS = {"dev": (27, 29), "held-out": (26, 30, 25)}
SEEDS = {"dev": (1, 2, 3, 4, 5, 6), "held-out": (101, 102, 103, 104, 105, 106)}
VOICES = {"dev": synth.GUITAR, "held-out": synth.Voice(harmonics=12, brightness=1.1, decay=1.4,
                                                         harmonic_decay=0.25, inharmonicity=0.0003)}


@dataclass(frozen=True)
class Move:
    """From `time`, the pitch goes to `semitones` above the picked pitch over `ramp` seconds."""

    time: float
    semitones: float
    ramp: float
    kind: str                 # "hammer_on", "pull_off", "slide", "bend", "release"


@dataclass
class Stroke:
    """One pluck and what the fretting hand does while it sounds."""

    pitch: int
    start: float
    end: float
    velocity: float
    moves: list[Move] = field(default_factory=list)
    vibrato: tuple[float, float, float] | None = None    # (from time, depth semitones, rate Hz)
    channel: int = 0                                      # 0: the line (pitch wheel), 1: arpeggios
    let_ring: int = 0                                     # the reference marks let ring (arpeggio notes)

    def offset(self, t: np.ndarray) -> np.ndarray:
        """Semitones above `pitch` at times `t` (seconds, absolute)."""
        out = np.zeros_like(t, dtype=np.float64)
        level = 0.0
        for move in self.moves:
            ramp = max(move.ramp, 1e-4)
            frac = np.clip((t - move.time) / ramp, 0.0, 1.0)
            out = np.where(t >= move.time, level + (move.semitones - level) * frac, out)
            level = move.semitones
        if self.vibrato is not None:
            since, depth, rate = self.vibrato
            grow = np.clip((t - since) / 0.1, 0.0, 1.0)
            out = out + np.where(t >= since, grow * depth * np.sin(2 * np.pi * rate * (t - since)), 0.0)
        return out


@dataclass
class Phrase:
    """Strokes and the reference notes they make (techniques and bend sizes marked)."""

    name: str
    strokes: list[Stroke]
    reference: list[Note]
    seconds: float


def reference_notes(strokes: list[Stroke]) -> list[Note]:
    """The notes a transcriber should find in `strokes`, with their techniques.

    A bend's size goes in `pitch_bend` as [0, size] (how the exporters read it).
    """
    notes: list[Note] = []
    for stroke in strokes:
        current = Note(stroke.pitch, stroke.start, stroke.end, stroke.velocity)
        if stroke.let_ring:
            current.add_technique("let_ring")
        if stroke.vibrato is not None:
            current.add_technique("vibrato")
        for move in stroke.moves:
            if move.kind == "bend":
                current.add_technique("bend")
                current.pitch_bend = [0.0, float(move.semitones)]
            elif move.kind in ("hammer_on", "pull_off", "slide"):
                onset = move.time + 0.5 * move.ramp
                current.end = onset
                notes.append(current)
                current = Note(stroke.pitch + int(round(move.semitones)), onset, stroke.end,
                               stroke.velocity * 0.7, technique=move.kind)
        notes.append(current)
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def phrase(seed: int, seconds: float = 20.0) -> Phrase:
    """A random phrase of technique cells on a beat grid (see the module docstring)."""
    rng = np.random.default_rng(seed)
    bpm = float(rng.choice([84.0, 92.0, 100.0, 108.0]))
    beat = 60.0 / bpm
    cells = ["pick", "pick_pair", "bend", "bend", "vibrato", "hammer", "pull", "slide", "slide", "arpeggio"]
    strokes: list[Stroke] = []
    t = 0.5
    while t < seconds - 3.0:
        cell = str(rng.choice(cells))
        vel = float(rng.uniform(0.7, 0.95))
        p = int(rng.integers(57, 74))
        if cell == "pick":
            length = beat * float(rng.choice([0.5, 1.0]))
            legato = bool(rng.random() < 0.5)
            strokes.append(Stroke(p, t, t + (length if legato else 0.7 * length), vel))
            t += length
        elif cell == "pick_pair":
            step = int(rng.choice([-4, -3, -2, -1, 1, 2, 3, 4]))
            strokes.append(Stroke(p, t, t + beat / 2, vel))
            strokes.append(Stroke(p + step, t + beat / 2, t + beat, float(rng.uniform(0.7, 0.95))))
            t += beat
        elif cell == "bend":
            size = float(rng.choice(BEND_STEPS))
            at = t + beat * float(rng.choice([0.25, 0.5]))
            ramp = float(rng.uniform(0.1, 0.2))
            moves = [Move(at, size, ramp, "bend")]
            strokes.append(Stroke(min(p, 70), t, t + 2 * beat, vel, moves))
            t += 2 * beat
        elif cell == "vibrato":
            depth, rate = float(rng.uniform(0.25, 0.5)), float(rng.uniform(5.0, 6.5))
            strokes.append(Stroke(p, t, t + 2 * beat, vel, vibrato=(t + 0.15, depth, rate)))
            t += 2 * beat
        elif cell in ("hammer", "pull"):
            step = int(rng.integers(1, 5)) * (1 if cell == "hammer" else -1)
            kind = "hammer_on" if cell == "hammer" else "pull_off"
            strokes.append(Stroke(p, t, t + beat, vel, [Move(t + beat / 2, step, 0.0, kind)]))
            t += beat
        elif cell == "slide":
            step = int(rng.choice([-7, -5, -4, -3, -2, 2, 3, 4, 5, 7]))
            ramp = float(rng.uniform(0.05, 0.1))
            strokes.append(Stroke(p, t, t + 1.5 * beat, vel, [Move(t + 0.75 * beat - ramp / 2, step, ramp, "slide")]))
            t += 1.5 * beat
        else:  # an arpeggio held under its later notes: let ring
            root = int(rng.integers(45, 53))
            shape = [0, 7, 12, 16] if rng.random() < 0.5 else [0, 7, 12, 15]
            end = t + 2 * beat
            for k, interval in enumerate(shape):
                strokes.append(Stroke(root + interval, t + k * beat / 2, end, float(rng.uniform(0.6, 0.85)),
                                      channel=1, let_ring=int(k < len(shape) - 1)))
            t += 2 * beat
    return Phrase(f"phrase-{seed}", strokes, reference_notes(strokes), seconds)


def render_synth(phrase: Phrase, voice: synth.Voice = synth.GUITAR, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The phrase on the additive voice, mono float32 (see the module docstring)."""
    out = np.zeros(int(phrase.seconds * sample_rate) + 1)
    for i, stroke in enumerate(phrase.strokes):
        n = int((stroke.end - stroke.start + voice.release) * sample_rate)
        t = stroke.start + np.arange(n) / sample_rate
        f0 = synth.midi_to_hz(stroke.pitch) * 2.0 ** (stroke.offset(t) / 12.0)
        rng = np.random.default_rng(i)
        local = t - stroke.start
        # Each hammer-on or pull-off taps fresh energy into the string: softer than a pick.
        taps = np.zeros(n)
        for move in stroke.moves:
            if move.kind in ("hammer_on", "pull_off"):
                since = t - move.time
                taps += np.where(since >= 0, 0.45 * np.exp(-np.maximum(since, 0) * 6.0), 0.0)
        sound = np.zeros(n)
        for k in range(1, voice.harmonics + 1):
            fk = k * f0 * np.sqrt(1.0 + voice.inharmonicity * k * k)
            if fk.max() >= sample_rate / 2 * 0.95:
                break
            amp = (1.0 / k) ** (1.0 / max(voice.brightness, 1e-3))
            env = np.exp(-local * voice.decay * (1.0 + voice.harmonic_decay * (k - 1)))
            phase = 2 * np.pi * np.cumsum(fk) / sample_rate + rng.uniform(0, 2 * np.pi)
            sound += amp * (env + taps) * np.sin(phase)
        dur = stroke.end - stroke.start
        attack = np.clip(local / voice.attack, 0.0, 1.0)
        release = np.clip((dur + voice.release - local) / voice.release, 0.0, 1.0)
        sound *= attack * release
        if voice.drive:
            sound = np.tanh(voice.drive * sound) / np.tanh(voice.drive)
        sound = sound / (np.abs(sound).max() or 1.0) * stroke.velocity
        a = int(stroke.start * sample_rate)
        b = min(a + n, out.size)
        out[a:b] += sound[: b - a]
    return (0.3 * out).astype(np.float32)


def have_fluidsynth() -> bool:
    """FluidSynth and the FluidR3 GM soundfont are installed."""
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def _wheel(semitones: float) -> int:
    return int(np.clip(round(semitones / WHEEL_RANGE * 8192), -8192, 8191))


def phrase_midi(phrase: Phrase, program: int):  # -> pretty_midi.PrettyMIDI
    """The phrase as MIDI: the line with pitch-wheel moves on one channel, arpeggios on another."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    line = pretty_midi.Instrument(program=program, name="line")
    arps = pretty_midi.Instrument(program=program, name="arpeggios")
    # RPN 0 (pitch-bend sensitivity) = WHEEL_RANGE semitones; spaced so every player keeps the order.
    for k, (cc, value) in enumerate(((101, 0), (100, 0), (6, WHEEL_RANGE), (38, 0), (101, 127), (100, 127))):
        line.control_changes.append(pretty_midi.ControlChange(cc, value, 0.001 * k))
    for stroke in phrase.strokes:
        velocity = int(np.clip(round(stroke.velocity * 127), 1, 127))
        note = pretty_midi.Note(velocity, stroke.pitch, stroke.start, stroke.end)
        if stroke.channel:
            arps.notes.append(note)
            continue
        line.notes.append(note)
        line.pitch_bends.append(pretty_midi.PitchBend(0, max(0.0, stroke.start - 0.003)))
        if not stroke.moves and stroke.vibrato is None:
            continue
        times = np.arange(stroke.start, stroke.end, WHEEL_STEP)
        values = [_wheel(v) for v in stroke.offset(times)]
        last = 0
        for when, value in zip(times, values, strict=True):
            if value != last:
                line.pitch_bends.append(pretty_midi.PitchBend(value, float(when)))
                last = value
    midi.instruments.extend([line, arps])
    return midi


def render_fluidsynth(phrase: Phrase, program: int) -> np.ndarray:
    """The phrase played by a General MIDI guitar (FluidSynth), mono float32 at 44.1 kHz."""
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "phrase.mid", Path(tmp) / "phrase.wav"
        phrase_midi(phrase, program).write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F", str(wav), str(SOUNDFONT),
                        str(mid)], check=True, capture_output=True)
        audio, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    n = int(phrase.seconds * SAMPLE_RATE)
    return np.pad(mono[:n], (0, max(0, n - mono.size))).astype(np.float32)


@dataclass
class Render:
    """One rendered phrase: which split and family it belongs to, its audio and truth."""

    name: str
    split: str                # "dev" or "held-out"
    family: str               # "synth" or "gm"
    audio: np.ndarray         # mono float32, 44.1 kHz
    reference: list[Note]


def renders(split: str, families: tuple[str, ...] = ("synth", "gm"), seconds: float = 20.0) -> Iterator[Render]:
    """Every phrase of `split` in every family available (gm needs FluidSynth)."""
    for i, seed in enumerate(SEEDS[split]):
        p = phrase(seed, seconds)
        if "synth" in families:
            yield Render(f"synth-{p.name}", split, "synth", render_synth(p, VOICES[split]), p.reference)
        if "gm" in families and have_fluidsynth():
            program = PROGRAMS[split][i % len(PROGRAMS[split])]
            yield Render(f"gm{program}-{p.name}", split, "gm", render_fluidsynth(p, program), p.reference)
