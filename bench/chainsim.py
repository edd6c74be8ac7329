"""The chain's note path run in-process on a whole mix, with cached stems and model outputs (for tuning).

`simulate(mix_audio, tunings)` does what a song through `tabagent run`'s embedded chain
does to the notes, with the same classes, minus gRPC and streaming: the DSP separator's
stream on the stereo mix, each stem averaged to mono (as the gateway sends it), resampled
to 22,050 Hz by the transcriber's StreamResampler, Basic Pitch on its windows, the
transcriber's NoteTracker with the service's settings (`parse_config`), then the
gateway's BleedFilter. Separated stems and model outputs are cached on disk (keyed by the
separator's source and the stem's bytes), so a change to post-processing reruns in about a
second per mix. bench/family_accuracy.py reports the real chain; this is its fast twin,
checked against it with `--check`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TABAGENT_BENCH_CACHE", Path.home() / ".cache" / "tabagent" / "families")) / "sim"


def _source_key(*modules: str) -> str:
    digest = hashlib.sha1()
    for module in modules:
        digest.update((ROOT / module).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class StemInfo:
    """A separated stem as the transcriber receives it, and what the separator called it."""

    audio: np.ndarray        # mono float32 at 44.1 kHz
    name: str


def separate(name: str, mix: np.ndarray, stems: tuple[str, ...] = ("guitar", "bass")) -> dict[str, np.ndarray]:
    """The DSP separator's stems of a (frames, 2) mix, as mono (cached)."""
    from separator_svc.dsp import DspModel

    key = _source_key("separator_svc/dsp.py", "separator_svc/base.py")
    path = CACHE / "stems" / f"{name}-{key}-{'-'.join(stems)}.npz"
    if path.exists():
        with np.load(path) as data:
            return {s: data[s] for s in stems}
    stream = DspModel().open_stream(list(stems))
    out = stream.push(mix.astype(np.float32))
    rest = stream.finish()
    result = {s: np.concatenate([out[s], rest[s]]).mean(axis=1).astype(np.float32) for s in stems}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result)
    return result


_MODEL = None


def _model():  # type: ignore[no-untyped-def]
    global _MODEL
    if _MODEL is None:
        from transcriber_svc.model import BasicPitchModel

        _MODEL = BasicPitchModel(threads=1)
    return _MODEL


def model_outputs(audio22: np.ndarray, windows: np.ndarray):  # type: ignore[no-untyped-def]
    """Basic Pitch's outputs for a stem's windows (cached by the windows' bytes)."""
    from transcriber_svc.model import ModelOutput

    key = hashlib.sha1(windows.tobytes()).hexdigest()[:16]
    path = CACHE / "bp" / f"{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return ModelOutput(data["note"], data["onset"], data["contour"])
    out = _model().forward_each(windows) if len(windows) else None
    if out is None:
        raise ValueError("no windows")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, note=out.note, onset=out.onset, contour=out.contour)
    return out


def transcribe(stem: np.ndarray, instrument: str, tuning_name: str = "standard", part: str = ""):  # type: ignore[no-untyped-def]
    """The transcriber service's notes for a mono 44.1 kHz stem (notes, out_of_range)."""
    from tabagent import tuning as tunings
    from tabagent.audio import StreamResampler
    from tabagent.v1 import transcriber_pb2
    from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
    from transcriber_svc.config import TranscriberConfig
    from transcriber_svc.pipeline import NoteTracker
    from transcriber_svc.request import parse_config

    config = TranscriberConfig()
    tuning = tunings.named(instrument, tuning_name)
    cfg = transcriber_pb2.TranscribeConfig(instrument=instrument, part=part or instrument, tuning=tuning.to_proto())
    settings = parse_config(cfg, config.max_buffer_seconds, config.early_seconds)
    tracker = NoteTracker(settings.tuning, settings.instrument, settings.decoder, settings.post, early=settings.early)
    resampler = StreamResampler(44_100, AUDIO_SAMPLE_RATE, 1)
    audio = resampler.process(stem[:, None].astype(np.float32))
    tail = resampler.process(np.zeros((0, 1), np.float32), last=True)
    samples = np.concatenate([audio, tail])[:, 0]
    windows = np.concatenate([tracker.push_audio(samples), tracker.finish_audio()])
    outputs = model_outputs(samples, windows)
    got = tracker.add_outputs(outputs)
    rest = tracker.flush()
    return got.notes + rest.notes, got.out_of_range + rest.out_of_range


def bleed_filter(parts: Mapping[str, list], instruments: Mapping[str, str], mix: np.ndarray | None = None
                 ) -> dict[str, list]:
    """The gateway's BleedFilter over whole parts (with the mix's stereo field, as the gateway)."""
    from gateway.crosspart import BleedFilter
    from gateway.stereo import StereoField
    from tabagent.notes import Note
    from tabagent.v1 import audio_pb2

    stereo = None
    if mix is not None:
        stereo = StereoField(seconds=mix.shape[0] / 44_100 + 1.0)
        stereo.push(mix)
    flt = BleedFilter(dict(instruments), stereo=stereo)
    out: dict[str, list] = {p: [] for p in parts}
    order = [p for p in parts if instruments[p] == "bass"] + [p for p in parts if instruments[p] != "bass"]
    batches = []
    for p in order:
        batch = audio_pb2.NoteBatch(part=p, notes=[n.to_proto() for n in parts[p]], final_until=0.0)
        batches += flt.add(p, batch)
    for p in order:
        batches += flt.end(p)
    for b in batches:
        out[b.part].extend(Note.from_proto(n) for n in b.notes)
    return out


def simulate(name: str, mix: np.ndarray, guitar_tuning: str = "standard") -> dict[str, list]:
    """The notes the embedded chain would send for a mix's guitar and bass parts."""
    stems = separate(name, mix)
    parts = {
        "guitar": transcribe(stems["guitar"], "guitar", guitar_tuning)[0],
        "bass": transcribe(stems["bass"], "bass", "standard")[0],
    }
    return bleed_filter(parts, {"guitar": "guitar", "bass": "bass"}, mix)
