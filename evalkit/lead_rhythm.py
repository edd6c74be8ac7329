"""Songs with a lead and a rhythm guitar placed as mixes place them, to score the lead/rhythm split.

The lead is a single-note melody in the upper register, in the middle of the stereo
image; the rhythm guitar strums chords lower down, double-tracked: two takes (their own
timing, loudness and, for the additive voice, phases) panned hard left and hard right.
Bass and drums sit in the middle. `layouts`:

* `stereo`: the layout above (what `--parts lead,rhythm` relies on most);
* `mono`: the same mix summed to mono: no stereo cue, only chords and register;
* `offset`: the lead 40 % left instead of centred, the rhythm takes at 70 % (a less
  textbook mix).

Voices: `synth` (evalkit's additive voices) and `gm` (General MIDI guitars through
FluidSynth, when installed). `songs(split)` gives the dev or held-out set: other seeds,
tempi and GM programs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit import synth
from tabagent.notes import Note

SAMPLE_RATE = synth.SAMPLE_RATE
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
LAYOUTS = ("stereo", "mono", "offset")
SEEDS = {"dev": (1, 2), "held-out": (101, 102)}
TEMPI = {"dev": (96.0, 112.0), "held-out": (88.0, 120.0)}
# (lead, rhythm) General MIDI programs, 0-based.
PROGRAMS = {"dev": ((29, 27), (30, 25)), "held-out": ((27, 29), (26, 30))}
PROGRESSION = ((40, "5"), (45, "m"), (43, ""), (38, ""))     # E5, Am, G, D (root MIDI, kind)
_KINDS = {"": (0, 4, 7, 12), "m": (0, 3, 7, 12), "5": (0, 7, 12)}
_SCALE = (0, 3, 5, 7, 10)                                     # minor pentatonic


@dataclass
class LeadRhythmSong:
    """One song: its stereo mix and the true notes of each part."""

    name: str
    split: str
    voice: str
    layout: str
    mix: np.ndarray                  # (frames, 2) at 44.1 kHz
    truth: dict[str, list[Note]]     # lead, rhythm (one take: what the tab should hold), bass


def _parts(seed: int, seconds: float, bpm: float) -> tuple[list[Note], list[list[Note]], list[Note]]:
    """The lead, the two rhythm takes and the bass."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    bar = 4 * beat
    lead: list[Note] = []
    takes: list[list[Note]] = [[], []]
    bass: list[Note] = []
    t0, k = 0.5, 0
    while t0 + bar <= seconds - 0.5:
        root, kind = PROGRESSION[k % len(PROGRESSION)]
        shape = _KINDS[kind]
        for b in range(4):
            when = t0 + b * beat
            for take in takes:
                jitter = float(rng.normal(0.0, 0.008))
                level = float(rng.uniform(0.55, 0.75))
                for j, interval in enumerate(shape):
                    start = when + jitter + 0.01 * j
                    take.append(Note(root + 12 + interval if root < 44 else root + interval, start,
                                     start + 0.9 * beat, level))
            bass.append(Note(root - 12, when, when + 0.85 * beat, float(rng.uniform(0.75, 0.9))))
        # The lead: eighths and quarters on the pentatonic of E, two octaves up, with rests.
        t = t0
        while t < t0 + bar - 1e-6:
            length = beat * float(rng.choice([0.5, 0.5, 1.0]))
            if rng.random() < 0.85:
                pitch = 64 + 12 * int(rng.integers(0, 2)) + _SCALE[int(rng.integers(0, len(_SCALE)))]
                lead.append(Note(pitch, t, t + 0.9 * length, float(rng.uniform(0.7, 0.95))))
            t += length
        t0 += bar
        k += 1
    return lead, takes, bass


def _render_gm(notes: list[Note], program: int, seconds: float) -> np.ndarray:
    import pretty_midi
    import soundfile

    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes = [pretty_midi.Note(int(np.clip(round(40 + 80 * n.velocity), 1, 127)), n.pitch, n.start, n.end)
                  for n in notes]
    midi.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "part.mid", Path(tmp) / "part.wav"
        midi.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F", str(wav), str(SOUNDFONT),
                        str(mid)], check=True, capture_output=True)
        audio, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    n = int(seconds * SAMPLE_RATE)
    return np.pad(mono[:n], (0, max(0, n - mono.size))).astype(np.float32)


def _level(audio: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return (audio * (10 ** (db / 20) / max(rms, 1e-9))).astype(np.float32)


def have_fluidsynth() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def song(seed: int, split: str, voice: str, layouts: tuple[str, ...] = LAYOUTS, seconds: float = 20.0,
         index: int = 0) -> Iterator[LeadRhythmSong]:
    """One song's notes rendered once with `voice`, mixed in each of `layouts`."""
    bpm = TEMPI[split][index % len(TEMPI[split])]
    lead, takes, bass = _parts(seed, seconds, bpm)
    if voice == "gm":
        lead_program, rhythm_program = PROGRAMS[split][index % len(PROGRAMS[split])]
        lead_audio = _render_gm(lead, lead_program, seconds)
        take_audio = [_render_gm(t, rhythm_program, seconds) for t in takes]
        bass_audio = _render_gm(bass, 33, seconds)
    else:
        lead_audio = synth.render_notes(lead, synth.OVERDRIVE_GUITAR, seconds)
        take_audio = [synth.render_notes(t, synth.GUITAR, seconds) for t in takes]
        bass_audio = synth.render_notes(bass, synth.BASS, seconds, gain=0.45)
    drums = synth.render_drums(synth.drum_hits(seconds, bpm, start=0.5), seconds)
    tracks = [_level(lead_audio, -17.0), _level(take_audio[0], -20.0), _level(take_audio[1], -20.0),
              _level(bass_audio, -18.0), _level(drums, -22.0)]
    truth = {"lead": lead, "rhythm": takes[0], "bass": bass}
    for layout in layouts:
        pans = {"stereo": [0.0, -1.0, 1.0, 0.0, 0.0], "mono": [0.0] * 5, "offset": [-0.4, -0.7, 0.7, 0.0, 0.1]}[layout]
        mix = synth.mix(tracks, pans=pans)
        if layout == "mono":
            mix = np.repeat(mix.mean(axis=1, keepdims=True), 2, axis=1)
        yield LeadRhythmSong(f"{voice}-{seed}-{layout}", split, voice, layout, mix, truth)


def songs(split: str, voices: tuple[str, ...] = ("synth", "gm"), layouts: tuple[str, ...] = LAYOUTS,
          seconds: float = 20.0) -> Iterator[LeadRhythmSong]:
    """Every song of `split` in every voice available (gm needs FluidSynth) and layout."""
    for index, seed in enumerate(SEEDS[split]):
        for voice in voices:
            if voice == "gm" and not have_fluidsynth():
                continue
            yield from song(seed, split, voice, layouts, seconds, index)
