"""Test mixes of guitar + bass + drums with known notes, for the chain's accuracy benchmarks.

Synthesised songs come from `tabagent.examples`; when ../shared/data is present, the
Slakh2100 track's guitar (S08) and bass (S04) stems are mixed with drums rendered from its
drum MIDI (S03) by `tabagent.synth`, in 30 s excerpts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tabagent import synth
from tabagent.examples import make_song
from tabagent.notes import Note

SHARED = Path(os.environ.get("TABAGENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SLAKH = SHARED / "slakh2100_Track01501"


@dataclass
class Mix:
    name: str
    audio: np.ndarray            # (frames, 2) at 44.1 kHz
    truth: dict[str, list[Note]]


def synthetic(count: int = 3, seconds: float = 30.0) -> Iterator[Mix]:
    """Synthesised songs at several tempos."""
    for i, bpm in enumerate((100.0, 128.0, 90.0, 115.0)[:count]):
        song = make_song(seconds, bpm=bpm, drums=True, seed=10 + i)
        yield Mix(f"synth-{int(bpm)}bpm", song.mix, song.parts)


def _midi_notes(path: Path, start: float, end: float, shift: int = 0) -> list[Note]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    notes = []
    for inst in pm.instruments:
        for n in inst.notes:
            if start <= n.start < end:
                notes.append(Note(n.pitch + shift, n.start - start, min(n.end, end) - start, n.velocity / 127))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def _drum_hits(path: Path, start: float, end: float) -> list[tuple[str, float]]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    hits = []
    for inst in pm.instruments:
        for n in inst.notes:
            if start <= n.start < end:
                kind = "kick" if n.pitch in (35, 36) else "snare" if n.pitch in (37, 38, 39, 40) else "hat"
                hits.append((kind, n.start - start))
    return hits


def _load(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=44_100)
        out = [f.to_ndarray().reshape(-1) for frame in c.decode(audio=0) for f in resampler.resample(frame)]
    return np.concatenate(out)


def slakh(seconds: float = 30.0, starts: tuple[float, ...] = (10.0, 60.0, 120.0),
          bass_shift: int = -12) -> Iterator[Mix]:
    """30 s excerpts of the Slakh track: guitar S08 + bass S04 + drums from S03.mid.

    The bass patch sounds an octave below its MIDI notes (measured: the raw transcription
    of the isolated stem matches best at -12), so the bass truth is shifted by `bass_shift`.
    """
    if not SLAKH.is_dir():
        return
    guitar = _load(SLAKH / "stems" / "S08.flac")
    bass = _load(SLAKH / "stems" / "S04.flac")
    sr = 44_100
    for start in starts:
        a, b = int(start * sr), int((start + seconds) * sr)
        if b > min(guitar.size, bass.size):
            continue
        drums = synth.render_drums(_drum_hits(SLAKH / "MIDI" / "S03.mid", start, start + seconds), seconds)
        tracks = [guitar[a:b], bass[a:b], drums[: b - a]]
        audio = synth.mix(tracks, pans=[-0.3, 0.0, 0.1])
        truth = {
            "guitar": _midi_notes(SLAKH / "MIDI" / "S08.mid", start, start + seconds),
            "bass": _midi_notes(SLAKH / "MIDI" / "S04.mid", start, start + seconds, bass_shift),
        }
        yield Mix(f"slakh-{int(start)}s", audio, truth)


def onset_f1(truth: list[Note], est: list[Note], tolerance: float = 0.05) -> tuple[float, float, float]:
    """mir_eval onset-only precision, recall, F1 (pitch within 50 cents)."""
    import mir_eval

    if not truth or not est:
        return 0.0, 0.0, 0.0
    ref_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in truth])
    ref_p = np.array([synth.midi_to_hz(n.pitch) for n in truth])
    est_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in est])
    est_p = np.array([synth.midi_to_hz(n.pitch) for n in est])
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=tolerance, offset_ratio=None)
    return float(p), float(r), float(f)
