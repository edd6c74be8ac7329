"""Example songs the repo makes itself, with their true notes and fingerings.

`python -m evalkit.examples make song.wav [--seconds 20]` writes a guitar + bass +
drums mix and `song.truth.json` beside it (notes with string and fret per part).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit import synth
from tabagent.notes import Note

# Chord shapes in standard tuning as (string, fret) with string 0 = low E.
_SHAPES: dict[str, list[tuple[int, int]]] = {
    "Em": [(0, 0), (1, 2), (2, 2), (3, 0), (4, 0), (5, 0)],
    "C": [(1, 3), (2, 2), (3, 0), (4, 1), (5, 0)],
    "G": [(0, 3), (1, 2), (2, 0), (3, 0), (4, 0), (5, 3)],
    "D": [(2, 0), (3, 2), (4, 3), (5, 2)],
    "Am": [(1, 0), (2, 2), (3, 2), (4, 1), (5, 0)],
}
_BASS_ROOT: dict[str, tuple[int, int]] = {  # (string, fret) on a 4-string bass, E A D G
    "Em": (0, 0),
    "C": (1, 3),
    "G": (0, 3),
    "D": (2, 0),
    "Am": (1, 0),
}
GUITAR_OPEN = (40, 45, 50, 55, 59, 64)
BASS_OPEN = (28, 33, 38, 43)


@dataclass
class Song:
    """A synthesised song: the mix, each part's audio and true notes."""

    mix: np.ndarray
    parts: dict[str, list[Note]]
    stems: dict[str, np.ndarray]
    bpm: float
    sample_rate: int = synth.SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return self.mix.shape[0] / self.sample_rate

    def truth(self) -> dict[str, object]:
        return {
            "bpm": self.bpm,
            "sample_rate": self.sample_rate,
            "parts": {
                name: {
                    "tuning": list(GUITAR_OPEN if name == "guitar" else BASS_OPEN),
                    "notes": [n.to_dict() for n in notes],
                }
                for name, notes in self.parts.items()
            },
        }


def _note(open_strings: tuple[int, ...], string: int, fret: int, start: float, end: float, vel: float) -> Note:
    return Note(open_strings[string] + fret, start, end, vel, string, fret)


def make_song(seconds: float = 20.0, bpm: float = 100.0, drums: bool = True, seed: int = 0) -> Song:
    """Make a song: guitar arpeggios and strums over a bass line and a rock beat.

    Args:
        seconds: length of the song.
        bpm: tempo.
        drums: include the drum kit.
        seed: varies the velocities.

    Returns:
        The Song with its mix (44.1 kHz stereo), stems and true notes.
    """
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    bar = 4 * beat
    progression = ["Em", "C", "G", "D", "Am", "C", "G", "D"]
    guitar: list[Note] = []
    bass: list[Note] = []
    t0 = 0.5
    bar_index = 0
    while t0 + bar <= seconds - 0.3:
        chord = progression[bar_index % len(progression)]
        shape = _SHAPES[chord]
        if bar_index % 2 == 0:
            # Arpeggio in eighth notes, each note ringing until the next on its string.
            order = shape + shape[-2:0:-1]
            for i in range(8):
                s, f = order[i % len(order)]
                start = t0 + i * beat / 2
                guitar.append(_note(GUITAR_OPEN, s, f, start, start + beat * 0.45, float(rng.uniform(0.6, 0.9))))
        else:
            # Two strums of the full shape per bar, a few ms between strings.
            for when in (0.0, 2 * beat):
                for j, (s, f) in enumerate(shape):
                    start = t0 + when + 0.012 * j
                    guitar.append(_note(GUITAR_OPEN, s, f, start, t0 + when + 1.8 * beat, float(rng.uniform(0.55, 0.8))))
        rs, rf = _BASS_ROOT[chord]
        for i in range(4):
            start = t0 + i * beat
            # root, root, fifth (on the next string up, two frets higher), root
            s, f = (rs + 1, rf + 2) if i == 2 and rs + 1 < 4 else (rs, rf)
            bass.append(_note(BASS_OPEN, s, f, start, start + beat * 0.85, float(rng.uniform(0.75, 0.95))))
        t0 += bar
        bar_index += 1
    guitar_audio = synth.render_notes(guitar, synth.GUITAR, seconds)
    bass_audio = synth.render_notes(bass, synth.BASS, seconds, gain=0.45)
    stems = {"guitar": guitar_audio, "bass": bass_audio}
    tracks = [guitar_audio, bass_audio]
    if drums:
        stems["drums"] = synth.render_drums(synth.drum_hits(seconds, bpm, start=0.5), seconds)
        tracks.append(stems["drums"])
    mixed = synth.mix(tracks, pans=[-0.3, 0.0, 0.1][: len(tracks)])
    return Song(mixed, {"guitar": guitar, "bass": bass}, stems, bpm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit.examples")
    sub = parser.add_subparsers(dest="cmd", required=True)
    make = sub.add_parser("make", help="write an example song and its true notes")
    make.add_argument("path", type=Path)
    make.add_argument("--seconds", type=float, default=20.0)
    make.add_argument("--bpm", type=float, default=100.0)
    make.add_argument("--no-drums", action="store_true")
    make.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    song = make_song(args.seconds, args.bpm, not args.no_drums, args.seed)
    synth.write_wav(str(args.path), song.mix, song.sample_rate)
    truth = args.path.with_suffix(".truth.json")
    truth.write_text(json.dumps(song.truth(), indent=1))
    print(f"wrote {args.path} ({song.seconds:.1f} s) and {truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
