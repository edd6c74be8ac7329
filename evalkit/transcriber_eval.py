"""Onset F1 of raw Basic Pitch notes against the post-processed ones, on known notes.

`python -m evalkit.transcriber_eval [--slakh DIR] [--seconds 30]` transcribes the
synthesised guitar and bass stems of `evalkit.examples.make_song` and, when present, the
Slakh2100 bass (S04) and guitar (S08) stems, and prints mir_eval's note onset precision,
recall and F1 (50 ms onset tolerance, offsets ignored) for:

* raw: the streamed Basic Pitch notes (predict()'s defaults), no post-processing;
* post: the notes the service sends (post-processing and fingering), in range or not.

Slakh's MIDI is what the sample library was played with; some patches sound an octave
away from it (the track's fretless bass sounds an octave below its MIDI). The reference
is moved by the whole octave that best matches the *raw* notes, and the shift is printed.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soxr

from evalkit.scoring import Scores, onset_scores
from tabagent import tuning as tunings
from tabagent.notes import Note
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
from transcriber_svc.decoder import DecoderSettings
from transcriber_svc.model import BasicPitchModel
from transcriber_svc.pipeline import NoteTracker
from transcriber_svc.postprocess import PostSettings, to_note

log = logging.getLogger(__name__)

DEFAULT_SLAKH = Path(__file__).resolve().parents[2] / "shared" / "data" / "slakh2100_Track01501"
SLAKH_STEMS = {"bass": "S04", "guitar": "S08"}


def transcribe(
    model: BasicPitchModel,
    audio: np.ndarray,
    instrument: str,
    block: int = AUDIO_SAMPLE_RATE,
    post: PostSettings | None = None,
    decoder: DecoderSettings | None = None,
) -> tuple[list[Note], list[Note]]:
    """Stream 22,050 Hz mono audio through a NoteTracker.

    Args:
        model: the warm model.
        audio: the stem.
        instrument: "guitar" or "bass" (standard tuning).
        block: samples per push.
        post: post-processing settings; when omitted, the instrument's defaults for an
            isolated stem (what this module evaluates).
        decoder: decoding settings (Basic Pitch's defaults when omitted).

    Returns:
        (raw decoded notes, final notes the service would send incl. out of range).
    """
    tuning = tunings.standard(instrument)
    post = post or PostSettings.for_instrument(instrument, tuning, isolated=True)
    tracker = NoteTracker(tuning, instrument, decoder=decoder, post=post, keep_raw=True)
    final: list[Note] = []
    for start in range(0, audio.size, block):
        out = tracker.add_outputs(model.forward_each(tracker.push_audio(audio[start : start + block])))
        final.extend([*out.notes, *out.out_of_range])
    out = tracker.add_outputs(model.forward_each(tracker.finish_audio()))
    final.extend([*out.notes, *out.out_of_range])
    out = tracker.flush()
    final.extend([*out.notes, *out.out_of_range])
    return [to_note(r) for r in tracker.raw_notes], final


def load_stem(path: Path) -> np.ndarray:
    """An audio file as 22,050 Hz mono float32 (channel mean, soxr HQ like librosa.load)."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return soxr.resample(mono, rate, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)


def midi_notes(path: Path) -> list[Note]:
    """Every note of a MIDI file."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    return [Note(n.pitch, n.start, n.end, n.velocity / 127) for inst in midi.instruments for n in inst.notes]


def align_octave(reference: list[Note], raw: Sequence[Note]) -> tuple[list[Note], int]:
    """The reference moved by the octave (-24..+24) that best matches the raw notes."""
    best = max(
        (-24, -12, 0, 12, 24),
        key=lambda s: onset_scores([Note(n.pitch + s, n.start, n.end) for n in reference], raw).f1,
    )
    return [Note(n.pitch + best, n.start, n.end, n.velocity) for n in reference], best


def evaluate_synth(model: BasicPitchModel, seconds: float, seed: int) -> dict[str, tuple[Scores, Scores]]:
    """Raw and post-processed scores on a synthesised song's guitar and bass stems."""
    from evalkit.examples import make_song

    song = make_song(seconds, bpm=100.0, drums=True, seed=seed)
    out = {}
    for part in ("bass", "guitar"):
        audio = soxr.resample(song.stems[part], song.sample_rate, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)
        raw, final = transcribe(model, audio, part)
        out[part] = (onset_scores(song.parts[part], raw), onset_scores(song.parts[part], final))
    return out


def evaluate_slakh(
    model: BasicPitchModel, track: Path, part: str, seconds: float | None = None
) -> tuple[Scores, Scores, int]:
    """Raw and post-processed scores on a Slakh stem; also the octave the MIDI was moved.

    Args:
        model: the warm model.
        track: the Slakh2100 track folder (stems/*.flac, MIDI/*.mid).
        part: "bass" or "guitar".
        seconds: only the song's first seconds (notes starting in them), or all of it.
    """
    stem = SLAKH_STEMS[part]
    audio = load_stem(track / "stems" / f"{stem}.flac")
    reference = midi_notes(track / "MIDI" / f"{stem}.mid")
    if seconds is not None:
        audio = audio[: int(seconds * AUDIO_SAMPLE_RATE)]
        reference = [n for n in reference if n.start < seconds - 0.1]
    raw, final = transcribe(model, audio, part)
    if seconds is not None:
        raw = [n for n in raw if n.start < seconds - 0.1]
        final = [n for n in final if n.start < seconds - 0.1]
    reference, shift = align_octave(reference, raw)
    return onset_scores(reference, raw), onset_scores(reference, final), shift


def ablation(model: BasicPitchModel, audio: np.ndarray, reference: list[Note]) -> dict[str, Scores]:
    """Bass post-processing one step at a time: which step buys what."""
    bass = tunings.standard("bass")
    variants = {
        "octave repair only": PostSettings(bass, monophonic=False, octave_repair=True),
        "monophony only": PostSettings(bass, monophonic=True, octave_repair=False),
        "both (default)": PostSettings.for_instrument("bass", bass, isolated=True),
    }
    return {name: onset_scores(reference, transcribe(model, audio, "bass", post=post)[1]) for name, post in variants.items()}


def main(argv: list[str] | None = None) -> int:
    """Print raw vs post-processed onset F1 (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m evalkit.transcriber_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--slakh", type=Path, default=DEFAULT_SLAKH, help="a Slakh2100 track folder")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the synthesised song")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ablation", action="store_true", help="also score each bass step alone")
    args = parser.parse_args(argv)
    model = BasicPitchModel()
    rows = []
    for seed in args.seeds:
        for part, (raw, post) in evaluate_synth(model, args.seconds, seed).items():
            rows.append((f"synth {part} (seed {seed}, {args.seconds:.0f} s)", raw, post, ""))
    if (args.slakh / "stems").is_dir():
        for part, stem in SLAKH_STEMS.items():
            if (args.slakh / "stems" / f"{stem}.flac").is_file():
                raw, post, shift = evaluate_slakh(model, args.slakh, part)
                rows.append((f"slakh {part} {stem}", raw, post, f"reference moved {shift:+d} semitones"))
    else:
        print(f"(no Slakh track at {args.slakh}; synthesised stems only)")
    for name, raw, post, note in rows:
        print(f"{name:34s} raw: {raw}   post: {post}   {note}")
    if args.ablation:
        from evalkit.examples import make_song

        song = make_song(args.seconds, bpm=100.0, drums=True, seed=args.seeds[0])
        synth = soxr.resample(song.stems["bass"], song.sample_rate, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)
        cases = [("synth bass", synth, list(song.parts["bass"]))]
        stem = args.slakh / "stems" / f"{SLAKH_STEMS['bass']}.flac"
        if stem.is_file():
            audio = load_stem(stem)
            decoded, _ = transcribe(model, audio, "bass")
            reference, _ = align_octave(midi_notes(args.slakh / "MIDI" / f"{SLAKH_STEMS['bass']}.mid"), decoded)
            cases.append(("slakh bass S04", audio, reference))
        for name, audio, reference in cases:
            for variant, scores in ablation(model, audio, reference).items():
                print(f"{name:18s} {variant:20s} {scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
