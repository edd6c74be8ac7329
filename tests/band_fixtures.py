"""Synthesised band mixes with known notes, and the chain's note path on them (DSP separator, Basic Pitch).

The parts are written here and played by `tabagent.synth` voices: a plucked bass, clean
and overdriven guitars, a sustained organ (no decay, slow attack: the keys that fill in
under a bass line) and a decaying piano; drums from `synth.render_drums`. `chain_notes`
runs what the embedded chain runs on a mix, in-process: the DSP separator's guitar and
bass stems (averaged to mono, as the gateway sends them), the transcriber's
decoding and post-processing with its service defaults (not isolated: the DSP guitar stem
holds the keys too), and the gateway's bleed filter with the mix's stereo field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soxr
from transcriber_fixtures import warm_model

from evalkit import synth
from evalkit import transcriber_eval as evaluate
from gateway.crosspart import BleedFilter
from gateway.stereo import StereoField
from separator_svc.dsp import DspModel
from tabagent import tuning as tunings
from tabagent.notes import Note
from tabagent.v1 import audio_pb2
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
from transcriber_svc.decoder import DecoderSettings
from transcriber_svc.postprocess import PostSettings
from transcriber_svc.request import default_frame_threshold

RATE = synth.SAMPLE_RATE
ORGAN = synth.Voice(harmonics=10, brightness=0.8, decay=0.02, harmonic_decay=0.0, attack=0.03, release=0.06)
PIANO = synth.Voice(harmonics=12, brightness=0.9, decay=0.9, harmonic_decay=0.25, inharmonicity=0.0004)
BEAT = 0.6           # 100 bpm
BAR = 4 * BEAT
START = 0.5
# A progression as chord roots (pitch classes) and minor flags, one chord per bar.
PROGRESSION = [(2, False), (9, False), (11, True), (7, False)]   # D A Bm G


@dataclass
class Mix:
    """A mix, the notes of its guitar and bass, and which guitar notes are chord tones."""

    audio: np.ndarray
    guitar: list[Note]
    bass: list[Note]
    chord_tones: list[bool]


def bars(count: int) -> list[tuple[float, int, bool]]:
    return [(START + i * BAR, *PROGRESSION[i % len(PROGRESSION)]) for i in range(count)]


def bass_line(count: int, low: int) -> list[Note]:
    """Root, root, fifth, root in quarters, the root the first at or above `low`."""
    notes = []
    for t0, root, _ in bars(count):
        base = low + (root - low) % 12
        for i, pitch in enumerate((base, base, base + 7, base)):
            notes.append(Note(pitch, t0 + i * BEAT, t0 + i * BEAT + 0.85 * BEAT, 0.9))
    return notes


def keys_parts(count: int) -> tuple[list[Note], list[Note]]:
    """Organ sustaining a triad and its root two octaves down; piano comping triads and a low root."""
    organ, piano = [], []
    for t0, root, minor in bars(count):
        triad = [60 + (root - 60) % 12]
        triad += [triad[0] + (3 if minor else 4), triad[0] + 7]
        left = 36 + (root - 36) % 12
        organ += [Note(p, t0, t0 + BAR - 0.03, 0.7) for p in (*triad, left)]
        for b in (0, 2):
            piano += [Note(p, t0 + b * BEAT, t0 + (b + 1.9) * BEAT, 0.6) for p in triad]
        piano.append(Note(left + 12, t0, t0 + BAR - 0.05, 0.6))
    return organ, piano


def drums(count: int) -> np.ndarray:
    return synth.render_drums(synth.drum_hits(START + count * BAR, 100.0, start=START), START + count * BAR + 0.5)


def mix(parts: Sequence[tuple[np.ndarray, float, float]]) -> np.ndarray:
    """(track, level dB relative, pan) parts, each brought to its level, summed in stereo."""
    tracks, pans = [], []
    for audio, db, pan in parts:
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) or 1.0
        tracks.append((audio * (10 ** (db / 20) * 0.1 / rms)).astype(np.float32))
        pans.append(pan)
    return synth.mix(tracks, pans=pans)


def chain_notes(audio: np.ndarray, guitar_tuning: str = "standard", isolated: bool = False) -> dict[str, list[Note]]:
    """The notes the embedded chain sends for a mix's guitar and bass (in range); `isolated`:
    as if each stem held its instrument alone (a Demucs 6-stem model's settings)."""
    stream = DspModel().open_stream(["guitar", "bass"])
    head, tail = stream.push(audio), stream.finish()
    parts: dict[str, list[Note]] = {}
    for part, tuning in (("guitar", tunings.named("guitar", guitar_tuning)), ("bass", tunings.standard("bass"))):
        stem = np.concatenate([head[part], tail[part]]).mean(axis=1)
        stem22 = soxr.resample(stem, RATE, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)
        decoder = DecoderSettings(frame_threshold=default_frame_threshold(part, isolated))
        post = PostSettings.for_instrument(part, tuning, isolated=isolated)
        _, sent = evaluate.transcribe(warm_model(), stem22, part, post=post, decoder=decoder)
        parts[part] = [n for n in sent if tuning.playable(n.pitch)]
    stereo = StereoField(seconds=audio.shape[0] / RATE + 1.0)
    stereo.push(audio)
    flt = BleedFilter({"guitar": "guitar", "bass": "bass"}, stereo=stereo)
    out = flt.add("bass", audio_pb2.NoteBatch(part="bass", notes=[n.to_proto() for n in parts["bass"]]))
    out += flt.add("guitar", audio_pb2.NoteBatch(part="guitar", notes=[n.to_proto() for n in parts["guitar"]]))
    out += flt.end("bass") + flt.end("guitar")
    return {p: [Note.from_proto(n) for b in out if b.part == p for n in b.notes] for p in ("guitar", "bass")}


@dataclass
class Scores:
    f1: float
    precision: float
    recall: float
    chord_recall: float
    octave_errors: float      # share of true notes found only exactly 12 semitones off
    found: int


def scores(truth: Sequence[Note], est: Sequence[Note], chord: Sequence[bool] | None = None) -> Scores:
    """mir_eval onset matching (50 ms), chord-tone recall and octave errors."""
    import mir_eval

    chord = list(chord) if chord is not None else [False] * len(truth)
    ref_i = np.array([[n.start, n.end] for n in truth])
    ref_p = np.array([synth.midi_to_hz(n.pitch) for n in truth])
    if not est:
        return Scores(0.0, 0.0, 0.0, 0.0, 0.0, 0)
    est_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in est])
    est_p = np.array([synth.midi_to_hz(n.pitch) for n in est])
    pairs = mir_eval.transcription.match_notes(ref_i, ref_p, est_i, est_p, onset_tolerance=0.05, offset_ratio=None)
    matched = {r for r, _ in pairs}
    used = {e for _, e in pairs}
    p, r = len(pairs) / len(est), len(pairs) / len(truth)
    chords = [i for i, c in enumerate(chord) if c]
    octave = sum(1 for i, n in enumerate(truth) if i not in matched and any(
        j not in used and abs(e.start - n.start) <= 0.05 and abs(e.pitch - n.pitch) == 12 for j, e in enumerate(est)))
    return Scores(2 * p * r / (p + r) if p + r else 0.0, p, r,
                  sum(i in matched for i in chords) / len(chords) if chords else 0.0, octave / len(truth), len(est))
