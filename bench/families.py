"""Songs written as MIDI and played by General MIDI soundfonts: the mix families the chain is judged on.

Five families, each a set of 30 s songs written here from a seed (chord progressions,
strums, riffs, bass lines, keys, drums) and rendered part by part with FluidSynth:

* ``gbd``: one guitar + bass + drums (guitar strums, arpeggios, riffs, power chords);
* ``band``: full band: drums, bass, piano, organ, strings, a pad, a synth lead and 2-5
  guitars panned across the stereo field (the bass half of the time in D3-A3);
* ``chords``: chord-heavy guitar over bass and drums: power chords, drop-D chugs (drop D
  tuning, as its player would tell the tool), open and barre chords strummed;
* ``bass``: bass lines high (D3-A3) or low under sustained piano and organ, drums, and
  sometimes a quiet guitar;
* ``acoustic``: solo acoustic guitar (steel or nylon): strums, fingerpicking, arpeggios.

Timbres vary per song: GM programs drawn from each role's pool (clean, jazz, muted,
overdriven, distortion, steel and nylon guitars; finger, pick, fretless, acoustic and
synth basses; pianos, organs, strings, pads, leads), and two soundfonts when installed
(FluidR3_GM and MuseScore_General_Lite; `scripts/install.sh --bench`).

Splits are fixed by seed, chosen before any setting was tuned: seeds 1-N are ``dev``,
seeds 1001-1000+N are ``held-out``. Renders are cached outside the repository
(`~/.cache/tabagent/families`, or TABAGENT_BENCH_CACHE), keyed by family, seed and
`VERSION`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit import synth
from tabagent.notes import Note

VERSION = 1
SR = 44_100
SECONDS = 30.0
FAMILIES = ("gbd", "band", "chords", "bass", "acoustic")
HELD_OUT_BASE = 1000
CACHE = Path(os.environ.get("TABAGENT_BENCH_CACHE", Path.home() / ".cache" / "tabagent" / "families"))
SOUNDFONTS = {
    "fluidr3": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "musescore": Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
}

STANDARD = (40, 45, 50, 55, 59, 64)
DROP_D = (38, 45, 50, 55, 59, 64)
# GM programs (0-based) per role.
ELECTRIC = {"jazz": 26, "clean": 27, "muted": 28, "overdriven": 29, "distortion": 30}
ACOUSTIC = {"nylon": 24, "steel": 25}
BASSES = {"acoustic": 32, "finger": 33, "pick": 34, "fretless": 35, "synth": 38}
PIANOS = {"grand": 0, "bright": 1, "electric-grand": 2, "rhodes": 4}
ORGANS = {"drawbar": 16, "percussive": 17, "rock": 18, "church": 19}
STRINGS = {"strings": 48, "slow-strings": 49, "synth-strings": 50}
PADS = {"new-age": 88, "warm": 89, "polysynth": 90, "choir": 91}
LEADS = {"square": 80, "saw": 81, "calliope": 82}
KICK, SNARE, HAT, OPEN_HAT, CRASH = 36, 38, 42, 46, 49

# Chords: root pitch class and quality; open shapes (string 0 = low E, fret) where they exist.
OPEN_SHAPES: dict[str, list[tuple[int, int]]] = {
    "E": [(0, 0), (1, 2), (2, 2), (3, 1), (4, 0), (5, 0)],
    "Em": [(0, 0), (1, 2), (2, 2), (3, 0), (4, 0), (5, 0)],
    "A": [(1, 0), (2, 2), (3, 2), (4, 2), (5, 0)],
    "Am": [(1, 0), (2, 2), (3, 2), (4, 1), (5, 0)],
    "C": [(1, 3), (2, 2), (3, 0), (4, 1), (5, 0)],
    "G": [(0, 3), (1, 2), (2, 0), (3, 0), (4, 0), (5, 3)],
    "D": [(2, 0), (3, 2), (4, 3), (5, 2)],
    "Dm": [(2, 0), (3, 2), (4, 3), (5, 1)],
}
NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
# Progressions as (semitones above the key, minor?) per bar.
PROGRESSIONS = [
    [(0, False), (7, False), (9, True), (5, False)],     # I V vi IV
    [(0, False), (5, False), (7, False), (5, False)],     # I IV V IV
    [(9, True), (5, False), (0, False), (7, False)],      # vi IV I V
    [(0, False), (9, True), (5, False), (7, False)],      # I vi IV V
    [(0, True), (8, False), (3, False), (10, False)],     # i VI III VII
    [(0, True), (5, True), (10, False), (3, False)],      # i iv VII III
]
OPEN_KEYS = [7, 0, 2, 9, 4]   # G, C, D, A, E: keys whose chords have open shapes


@dataclass
class Part:
    """One instrument of a song: its role, GM program, pan, level and notes."""

    name: str
    role: str                       # "guitar", "bass", "keys", "lead", "drums"
    program: int
    notes: list[tuple[int, float, float, int, int]] = field(default_factory=list)  # pitch, start, end, vel, chord id
    pan: float = 0.0
    level_db: float = -20.0
    drums: bool = False


@dataclass
class Song:
    """A written song: its parts, tempo and the guitar tuning its player uses."""

    family: str
    seed: int
    bpm: float
    soundfont: str
    parts: list[Part]
    guitar_tuning: str = "standard"
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}-{self.seed}"

    @property
    def split(self) -> str:
        return "held-out" if self.seed > HELD_OUT_BASE else "dev"


@dataclass
class FamilyMix:
    """A rendered song: the stereo mix, each role's true notes, chord membership, stems."""

    song: Song
    audio: np.ndarray                                   # (frames, 2) float32, 44.1 kHz
    truth: dict[str, list[Note]]                        # "guitar", "bass"
    chord_tones: dict[str, list[bool]]                  # per truth note: part of a chord
    stems: dict[str, np.ndarray]                        # role -> mono sum of its parts

    @property
    def name(self) -> str:
        return self.song.name

    @property
    def family(self) -> str:
        return self.song.family

    @property
    def split(self) -> str:
        return self.song.split


# -- writing -------------------------------------------------------------------------


class Writer:
    """Writes the parts of one song from a seeded random generator."""

    def __init__(self, seed: int, bpm: float, key: int, progression: list[tuple[int, bool]]) -> None:
        self.rng = np.random.default_rng(seed)
        self.bpm = bpm
        self.beat = 60.0 / bpm
        self.bar = 4 * self.beat
        self.key = key
        self.progression = progression
        self.start = 0.5
        self.bars = int((SECONDS - 1.0 - self.start) // self.bar)
        self._chord_id = 0

    def chords(self) -> Iterator[tuple[float, int, bool]]:
        """(bar start, root pitch class, minor) for every bar."""
        for i in range(self.bars):
            degree, minor = self.progression[i % len(self.progression)]
            yield self.start + i * self.bar, (self.key + degree) % 12, minor

    def next_chord(self) -> int:
        self._chord_id += 1
        return self._chord_id

    def vel(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    # -- guitar ---------------------------------------------------------------------

    def voicing(self, root: int, minor: bool, style: str, tuning: Sequence[int]) -> list[int]:
        """MIDI pitches of a chord shape, low string first."""
        name = NAMES[root] + ("m" if minor else "")
        if style == "open" and name in OPEN_SHAPES:
            return [tuning[s] + f for s, f in OPEN_SHAPES[name]]
        if style in ("power", "power3"):
            fret = (root - tuning[0]) % 12
            string = 0
            if fret > 7:
                string, fret = 1, (root - tuning[1]) % 12
            notes = [tuning[string] + fret, tuning[string + 1] + fret + 2]
            if style == "power3":
                notes.append(tuning[string + 2] + fret + 2)
            return notes
        # Barre: E shape rooted on the low E string, or A shape on the A string.
        fret_e = (root - tuning[0]) % 12
        fret_a = (root - tuning[1]) % 12
        if 1 <= fret_e <= 8 and (fret_e <= fret_a or fret_a == 0):
            f = fret_e
            shape = [(0, f), (1, f + 2), (2, f + 2), (3, f + (0 if minor else 1)), (4, f), (5, f)]
        else:
            f = fret_a if fret_a else 12
            shape = [(1, f), (2, f + 2), (3, f + 2), (4, f + (1 if minor else 2)), (5, f)]
        return [STANDARD[s] + fr for s, fr in shape]

    def strum(self, style: str, tuning: Sequence[int] = STANDARD, pattern: str | None = None) -> list:
        """Strummed chords: down strums low to high, up strums on the top strings."""
        patterns = ["D.D.D.D.", "D.DU.UDU", "D..UD.DU", "D.D.DUDU", "D...D..."]
        pattern = pattern or patterns[int(self.rng.integers(len(patterns)))]
        spread = float(self.rng.uniform(0.006, 0.018))
        eighth = self.beat / 2
        notes = []
        for t0, root, minor in self.chords():
            chord = self.voicing(root, minor, style, tuning)
            hits = [(i, c) for i, c in enumerate(pattern) if c in "DU"]
            for k, (i, c) in enumerate(hits):
                t = t0 + i * eighth
                nxt = t0 + hits[k + 1][0] * eighth if k + 1 < len(hits) else t0 + self.bar
                strings = chord if c == "D" else chord[-min(4, len(chord)):][::-1]
                cid = self.next_chord()
                v = self.vel(80, 110) if c == "D" else self.vel(55, 80)
                for j, p in enumerate(strings):
                    s = t + j * spread
                    notes.append((p, s, nxt - 0.02, v, cid))
        return notes

    def chug(self, tuning: Sequence[int] = DROP_D) -> list:
        """Drop-D palm-muted chugs on the low string with open power chords on the accents."""
        notes = []
        sixteenth = self.beat / 4
        for t0, root, _ in self.chords():
            fret = (root - tuning[0]) % 12
            if fret > 7:
                fret = 0
            for i in range(16):
                t = t0 + i * sixteenth
                if i % 8 == 0 or (i % 8 == 6 and self.rng.random() < 0.6):
                    cid = self.next_chord()
                    end = t + (2 * sixteenth if i % 8 == 6 else 4 * sixteenth) - 0.02
                    for j, p in enumerate((tuning[0] + fret, tuning[1] + fret, tuning[2] + fret)):
                        notes.append((p, t + 0.004 * j, end, self.vel(95, 115), cid))
                elif i % 2 == 0 or self.rng.random() < 0.5:
                    notes.append((tuning[0] + (0 if self.rng.random() < 0.7 else fret), t, t + sixteenth * 0.8,
                                  self.vel(70, 95), 0))
        return notes

    def arpeggio(self, style: str = "open", tuning: Sequence[int] = STANDARD) -> list:
        """Chord tones picked one at a time in eighths, each ringing for two eighths."""
        notes = []
        eighth = self.beat / 2
        for t0, root, minor in self.chords():
            chord = self.voicing(root, minor, style, tuning)
            order = chord + chord[-2:0:-1]
            for i in range(8):
                t = t0 + i * eighth
                notes.append((order[i % len(order)], t, t + 2 * eighth - 0.02, self.vel(65, 95), 0))
        return notes

    def fingerpick(self, tuning: Sequence[int] = STANDARD) -> list:
        """Travis picking: the thumb alternates bass strings on the beats, fingers on the off-beats."""
        notes = []
        eighth = self.beat / 2
        for t0, root, minor in self.chords():
            chord = self.voicing(root, minor, "open", tuning)
            bass = chord[: max(2, len(chord) - 4)] or chord[:1]
            treble = chord[-3:]
            for i in range(8):
                t = t0 + i * eighth
                if i % 2 == 0:
                    p = bass[(i // 2) % len(bass)]
                    notes.append((p, t, t + 2 * eighth - 0.02, self.vel(70, 95), 0))
                    if i == 0:
                        cid = self.next_chord()
                        notes[-1] = (*notes[-1][:4], cid)
                        notes.append((treble[-1], t + 0.005, t + 4 * eighth - 0.02, self.vel(60, 85), cid))
                else:
                    p = treble[int(self.rng.integers(len(treble)))]
                    notes.append((p, t, t + 3 * eighth - 0.02, self.vel(55, 85), 0))
        return notes

    def riff(self, low: int = 52, high: int = 76) -> list:
        """A single-note riff or lead line from the key's minor pentatonic, eighths and sixteenths."""
        scale = [p for p in range(low, high + 1) if (p - self.key) % 12 in (0, 3, 5, 7, 10)]
        notes = []
        idx = int(self.rng.integers(len(scale) // 3, 2 * len(scale) // 3))
        motif = []
        for _ in range(8):
            step = float(self.rng.choice([1, 2, 0.5]))
            motif.append((step, int(self.rng.integers(-2, 3))))
        for t0, _, _ in self.chords():
            t = t0
            for step, move in motif:
                dur = step * self.beat / 2
                if t + dur > t0 + self.bar + 1e-6:
                    break
                idx = int(np.clip(idx + move, 0, len(scale) - 1))
                if self.rng.random() < 0.88:
                    notes.append((scale[idx], t, t + dur * 0.9, self.vel(70, 105), 0))
                t += dur
        return notes

    # -- bass -----------------------------------------------------------------------

    def bass(self, style: str, register: str) -> list:
        """A bass line on the chord roots: low (E1-E2 roots) or high (roots in D3-A3)."""
        lo = 50 if register == "high" else 28
        notes = []
        beat = self.beat
        for t0, root, minor in self.chords():
            base = lo + (root - lo) % 12
            if register == "low" and base > 40:
                base -= 12
            third = base + (3 if minor else 4)
            fifth = base + 7
            if style == "eighths":
                line = [(base, i * beat / 2, beat / 2) for i in range(8)]
            elif style == "root-fifth":
                line = [(base, 0, beat), (fifth, beat, beat), (base, 2 * beat, beat), (fifth, 3 * beat, beat)]
            elif style == "octaves":
                line = [(base + 12 * (i % 2), i * beat / 2, beat / 2) for i in range(8)]
            elif style == "walking":
                approach = base + 12 + (1 if self.rng.random() < 0.5 else -1) if register == "low" else base - 1
                line = [(base, 0, beat), (third, beat, beat), (fifth, 2 * beat, beat), (approach, 3 * beat, beat)]
            else:   # "melodic": a moving line around the chord
                line = []
                for i, p in enumerate((base, fifth, third + 12 if register == "low" else third, fifth)):
                    line.append((p, i * beat, beat))
            for p, at, dur in line:
                notes.append((int(p), t0 + at, t0 + at + dur * float(self.rng.uniform(0.75, 0.95)), self.vel(80, 110), 0))
        return notes

    # -- keys, lead, drums ---------------------------------------------------------

    def keys(self, kind: str) -> list:
        """Piano comping, organ / strings / pad sustains, with a low left hand for piano and organ."""
        notes = []
        for t0, root, minor in self.chords():
            triad = [60 + (root - 60) % 12]
            triad += [triad[0] + (3 if minor else 4), triad[0] + 7]
            left = 36 + (root - 36) % 12
            if kind == "piano":
                for b in range(4) if self.rng.random() < 0.5 else (0, 2):
                    t = t0 + b * self.beat
                    cid = self.next_chord()
                    for p in triad:
                        notes.append((p, t, t + self.beat * 0.95, self.vel(55, 80), cid))
                notes.append((left, t0, t0 + self.bar - 0.05, self.vel(60, 85), 0))
                notes.append((left + 12, t0, t0 + self.bar - 0.05, self.vel(50, 75), 0))
            elif kind == "organ":
                for p in triad:
                    notes.append((p, t0, t0 + self.bar - 0.03, self.vel(60, 80), 0))
                notes.append((left, t0, t0 + self.bar - 0.03, self.vel(60, 80), 0))
            elif kind == "strings":
                for p in (triad[0] - 12, triad[1], triad[2] + 12):
                    notes.append((p, t0, t0 + self.bar - 0.02, self.vel(50, 75), 0))
            else:  # pad
                for p in (triad[0] - 12, triad[1] - 12, triad[2]):
                    notes.append((p, t0, t0 + self.bar - 0.02, self.vel(50, 70), 0))
        return notes

    def lead(self) -> list:
        return self.riff(67, 88)

    def drums(self) -> list:
        notes = []
        eighth = self.beat / 2
        for i, (t0, _, _) in enumerate(self.chords()):
            for k in range(8):
                t = t0 + k * eighth
                notes.append((HAT if k % 2 == 0 or self.rng.random() < 0.7 else OPEN_HAT, t, t + 0.05,
                              self.vel(60, 90), 0))
                if k in (0, 4) or (k == 5 and self.rng.random() < 0.3):
                    notes.append((KICK, t, t + 0.1, self.vel(95, 120), 0))
                if k in (2, 6):
                    notes.append((SNARE, t, t + 0.1, self.vel(90, 120), 0))
            if i % 4 == 0:
                notes.append((CRASH, t0, t0 + 0.5, self.vel(80, 100), 0))
        return notes


def _pick(rng: np.random.Generator, pool: dict[str, int]) -> tuple[str, int]:
    name = list(pool)[int(rng.integers(len(pool)))]
    return name, pool[name]


def write_song(family: str, seed: int, soundfonts: Sequence[str] | None = None) -> Song:
    """Write the song `seed` of `family` (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; pick one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([FAMILIES.index(family), seed])
    fonts = list(soundfonts or available_soundfonts())
    font = fonts[int(rng.integers(len(fonts)))]
    bpm = float(rng.integers(80, 141))
    key = int(rng.choice(OPEN_KEYS)) if family in ("acoustic", "chords") else int(rng.integers(12))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    w = Writer(int(rng.integers(1 << 30)), bpm, key, progression)
    parts: list[Part] = []
    tuning = "standard"
    words = []

    def guitar(name: str, pool: dict[str, int], styles: list[str], pan: float, level: float) -> None:
        prog_name, program = _pick(rng, pool)
        style = styles[int(rng.integers(len(styles)))]
        notes = {
            "strum-open": lambda: w.strum("open"),
            "strum-barre": lambda: w.strum("barre"),
            "power": lambda: w.strum("power", pattern="D.D.D.D." if rng.random() < 0.5 else "DDDDDDDD"),
            "power3": lambda: w.strum("power3", pattern="D..D..D."),
            "arpeggio": lambda: w.arpeggio("open" if family != "band" else "barre"),
            "fingerpick": w.fingerpick,
            "riff": w.riff,
            "chug": w.chug,
        }[style]()
        parts.append(Part(name, "guitar", program, notes, pan, level))
        words.append(f"{name}: {prog_name} {style}")

    def bass_part(register: str) -> None:
        prog_name, program = _pick(rng, BASSES)
        style = ["eighths", "root-fifth", "octaves", "walking", "melodic"][int(rng.integers(5))]
        if register == "high" and style == "octaves":
            style = "melodic"
        parts.append(Part("bass", "bass", program, w.bass(style, register), 0.0, float(rng.uniform(-19, -16))))
        words.append(f"bass: {prog_name} {style} {register}")

    def keys_part(kind: str, pool: dict[str, int], level: float) -> None:
        prog_name, program = _pick(rng, pool)
        parts.append(Part(kind, "keys", program, w.keys(kind), float(rng.uniform(-0.6, 0.6)), level))
        words.append(f"{kind}: {prog_name}")

    drums = Part("drums", "drums", 0, w.drums(), 0.1, -21.0, drums=True)
    if family == "gbd":
        guitar("guitar", {**ELECTRIC, **ACOUSTIC},
               ["strum-open", "strum-barre", "arpeggio", "riff", "power"], -0.3, float(rng.uniform(-19, -16)))
        bass_part("low" if rng.random() < 0.75 else "high")
        parts.append(drums)
    elif family == "band":
        count = int(rng.integers(2, 6))
        pans = np.linspace(-0.8, 0.8, count)
        rng.shuffle(pans)
        for i in range(count):
            guitar(f"guitar{i + 1}", {**ELECTRIC, **ACOUSTIC},
                   ["strum-open", "strum-barre", "arpeggio", "riff", "power", "power3"], float(pans[i]),
                   float(rng.uniform(-24, -19)))
        bass_part("high" if rng.random() < 0.5 else "low")
        keys_part("piano", PIANOS, float(rng.uniform(-23, -19)))
        keys_part("organ", ORGANS, float(rng.uniform(-27, -22)))
        keys_part("strings", STRINGS, float(rng.uniform(-28, -23)))
        keys_part("pad", PADS, float(rng.uniform(-28, -23)))
        name, program = _pick(rng, LEADS)
        parts.append(Part("lead", "lead", program, w.lead(), float(rng.uniform(-0.5, 0.5)),
                          float(rng.uniform(-26, -22))))
        words.append(f"lead: {name}")
        parts.append(drums)
    elif family == "chords":
        style = ["power", "power3", "chug", "strum-open", "strum-barre"][int(rng.integers(5))]
        if style == "chug":
            tuning = "drop_d"
        guitar("guitar", ELECTRIC if style in ("power", "power3", "chug") else {**ELECTRIC, **ACOUSTIC},
               [style], -0.3, float(rng.uniform(-18, -15)))
        if rng.random() < 0.5 and style != "chug":
            guitar("guitar2", ELECTRIC, ["power", "strum-barre", "arpeggio"], 0.4, float(rng.uniform(-22, -18)))
        bass_part("low")
        parts.append(drums)
    elif family == "bass":
        register = "high" if seed % 2 else "low"
        bass_part(register)
        keys_part("piano", PIANOS, float(rng.uniform(-22, -18)))
        keys_part("organ", ORGANS, float(rng.uniform(-25, -21)))
        if rng.random() < 0.5:
            guitar("guitar", ELECTRIC, ["arpeggio", "riff", "strum-barre"], -0.4, float(rng.uniform(-24, -20)))
        parts.append(drums)
    else:  # acoustic
        guitar("guitar", ACOUSTIC, ["strum-open", "fingerpick", "arpeggio", "strum-barre"], 0.0, -16.0)
    return Song(family, seed, bpm, font, parts, tuning, "; ".join(words))


def available_soundfonts() -> list[str]:
    """The soundfonts installed here (at least FluidR3_GM for any soundfont mix)."""
    return [name for name, path in SOUNDFONTS.items() if path.is_file()]


def have_fluidsynth() -> bool:
    return shutil.which("fluidsynth") is not None and bool(available_soundfonts())


# -- rendering -----------------------------------------------------------------------


def render_part(part: Part, soundfont: str) -> np.ndarray:
    """One part through FluidSynth: mono float32, SECONDS long, at 44.1 kHz."""
    import pretty_midi
    from mixes import _load

    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=part.program, is_drum=part.drums)
    inst.notes = [pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e))
                  for p, s, e, v, _ in part.notes]
    midi.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "part.mid", Path(tmp) / "part.wav"
        midi.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", str(SR), "-F", str(wav),
                        str(SOUNDFONTS[soundfont]), str(mid)], check=True, capture_output=True)
        audio = _load(wav)
    n = int(SECONDS * SR)
    return np.pad(audio[:n], (0, max(0, n - audio.size))).astype(np.float32)


def _at_level(audio: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return (audio * (10 ** (db / 20) / max(rms, 1e-9))).astype(np.float32)


def render(song: Song) -> FamilyMix:
    """Render (or read from the cache) a song's parts, and mix them."""
    folder = CACHE / f"v{VERSION}" / song.name
    folder.mkdir(parents=True, exist_ok=True)
    tracks, pans = [], []
    stems: dict[str, np.ndarray] = {}
    for part in song.parts:
        path = folder / f"{part.name}-{song.soundfont}.npy"
        if path.exists():
            audio = np.load(path)
        else:
            audio = render_part(part, song.soundfont)
            np.save(path, audio)
        audio = _at_level(audio, part.level_db)
        tracks.append(audio)
        pans.append(part.pan)
        stems[part.role] = stems.get(part.role, np.zeros_like(audio)) + audio
    mixed = synth.mix(tracks, pans=pans)
    truth: dict[str, list[Note]] = {"guitar": [], "bass": []}
    chords: dict[str, list[bool]] = {"guitar": [], "bass": []}
    for role in ("guitar", "bass"):
        rows = sorted((n for p in song.parts if p.role == role for n in p.notes), key=lambda n: (n[1], n[0]))
        sizes: dict[int, int] = {}
        for n in rows:
            if n[4]:
                sizes[n[4]] = sizes.get(n[4], 0) + 1
        truth[role] = [Note(int(p), float(s), float(e), v / 127) for p, s, e, v, _ in rows]
        chords[role] = [bool(c) and sizes.get(c, 0) >= 2 for *_, c in rows]
    (folder / "song.json").write_text(json.dumps({
        "family": song.family, "seed": song.seed, "split": song.split, "bpm": song.bpm,
        "soundfont": song.soundfont, "tuning": song.guitar_tuning, "parts": song.description}, indent=1))
    return FamilyMix(song, mixed, truth, chords, stems)


def songs(families: Sequence[str] = FAMILIES, per_split: int = 4, splits: Sequence[str] = ("dev", "held-out"),
          ) -> list[Song]:
    """The songs of each family and split (dev seeds 1..n, held-out 1001..1000+n)."""
    out = []
    for family in families:
        for split in splits:
            base = HELD_OUT_BASE if split == "held-out" else 0
            out += [write_song(family, base + i) for i in range(1, per_split + 1)]
    return out
