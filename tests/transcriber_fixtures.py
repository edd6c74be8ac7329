"""Helpers shared by the transcriber tests: the warm model, 22,050 Hz stems, references, F1."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soxr

from evalkit.examples import Song
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE, import_quietly, min_note_frames
from transcriber_svc.holder import warm_up
from transcriber_svc.model import BasicPitchModel
from transcriber_svc.streaming import Frames, WindowStream


@functools.cache
def warm_model() -> BasicPitchModel:
    """One warm Basic Pitch model for the whole test session."""
    model = BasicPitchModel(threads=2)
    warm_up(model)
    return model


def stem_22k(song: Song, part: str) -> np.ndarray:
    """A song's stem at Basic Pitch's rate (soxr HQ, as librosa.load resamples)."""
    return soxr.resample(song.stems[part], song.sample_rate, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)


def write_float_wav(path: Path, audio: np.ndarray) -> Path:
    """Write 22,050 Hz float32 audio losslessly (librosa.load reads it back unchanged)."""
    import soundfile

    soundfile.write(str(path), audio, AUDIO_SAMPLE_RATE, subtype="FLOAT")
    return path


def whole_file_output(path: Path) -> dict[str, np.ndarray]:
    """basic_pitch.inference.run_inference on a file with the same ONNX model."""
    inference = import_quietly("basic_pitch.inference")
    return inference.run_inference(str(path), inference.Model(str(warm_model().path)))


def whole_file_notes(output: dict[str, np.ndarray]) -> list[tuple[float, float, int, float, list[int]]]:
    """basic-pitch's own note creation with predict()'s defaults, sorted."""
    note_creation = import_quietly("basic_pitch.note_creation")
    copy = {k: np.array(v, copy=True) for k, v in output.items()}
    _, events = note_creation.model_output_to_notes(
        copy, onset_thresh=0.5, frame_thresh=0.3, min_note_len=min_note_frames(127.70)
    )
    return sorted((float(s), float(e), int(p), float(a), [int(b) for b in bends]) for s, e, p, a, bends in events)


def song_maxima(output: dict[str, np.ndarray]) -> tuple[float, float]:
    """The song-wide maxima get_infered_onsets rescales by: (max onset, max frame rise)."""
    frames = output["note"].astype(np.float64)
    diffs = []
    for n in (1, 2):
        padded = np.concatenate([np.zeros((n, frames.shape[1])), frames])
        diffs.append(padded[n:] - padded[:-n])
    rise = np.min(diffs, axis=0)
    rise[rise < 0] = 0
    rise[:2] = 0
    return float(output["onset"].max()), float(rise.max())


def stream_frames(audio: np.ndarray, block: int, model: BasicPitchModel | None = None) -> Frames:
    """Frames of `audio` through WindowStream, fed `block` samples at a time."""
    model = model or warm_model()
    stream = WindowStream()
    parts = []
    for start in range(0, audio.size, block):
        out = model.forward_each(stream.push(audio[start : start + block]))
        parts.append(stream.add_outputs(out.note, out.onset, out.contour))
    out = model.forward_each(stream.finish())
    parts.append(stream.add_outputs(out.note, out.onset, out.contour))
    return Frames.concat(parts)
