"""The installed basic-pitch package: quiet import, model path, constants and frame times.

basic-pitch's `__init__` logs a warning for every backend it does not find (TensorFlow,
CoreML, TFLite) through the root logger. This service uses the ONNX model on purpose, so
those records (and resampy's pkg_resources deprecation warning) are dropped while the
package is imported; everything else is untouched.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

# Copied from basic_pitch.constants (and checked against it in the tests) so that the
# streaming code can size buffers without importing the package first.
AUDIO_SAMPLE_RATE = 22_050
FFT_HOP = 256
AUDIO_N_SAMPLES = AUDIO_SAMPLE_RATE * 2 - FFT_HOP      # 43,844 samples per model window
ANNOTATIONS_FPS = AUDIO_SAMPLE_RATE // FFT_HOP          # 86 (integer, as basic-pitch uses it)
ANNOT_N_FRAMES = ANNOTATIONS_FPS * 2                    # 172 frames out of each window
N_OVERLAPPING_FRAMES = 30                               # run_inference's window overlap
OVERLAP_LEN = N_OVERLAPPING_FRAMES * FFT_HOP            # 7,680 samples
HOP_SIZE = AUDIO_N_SAMPLES - OVERLAP_LEN                # 36,164 samples between windows
N_PITCHES = 88                                          # MIDI 21..108
CONTOUR_BINS_PER_SEMITONE = 3
N_CONTOUR_BINS = CONTOUR_BINS_PER_SEMITONE * N_PITCHES  # 1/3-semitone pitch contour
CONTOUR_BASE_HZ = 27.5                                  # ANNOTATIONS_BASE_FREQUENCY: MIDI 21
MIDI_OFFSET = 21
FRAMES_PER_SECOND = AUDIO_SAMPLE_RATE / FFT_HOP         # 86.13 model frames per second

# model_frames_to_time's per-window correction (its "magic number" included).
_WINDOW_OFFSET = (FFT_HOP / AUDIO_SAMPLE_RATE) * (ANNOT_N_FRAMES - (AUDIO_N_SAMPLES / FFT_HOP)) + 0.0018


class _DropMissingBackendWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.replace("\\", "/").endswith("basic_pitch/__init__.py")


def import_quietly(module: str) -> ModuleType:
    """Import a basic_pitch module without its missing-backend warnings.

    Args:
        module: e.g. "basic_pitch.note_creation".

    Returns:
        The imported module.
    """
    root = logging.getLogger()
    quiet = _DropMissingBackendWarnings()
    root.addFilter(quiet)
    lastresort = logging.lastResort
    if lastresort is not None:
        lastresort.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            # resampy, which note_creation imports, still uses pkg_resources.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module(module)
    finally:
        root.removeFilter(quiet)
        if lastresort is not None:
            lastresort.removeFilter(quiet)


@cache
def note_creation() -> ModuleType:
    """basic_pitch.note_creation: the reference the tests compare `frame_times` and the
    pitch bends with. The service never imports it (it brings mir_eval, scipy.stats, librosa,
    numba and pretty_midi: seconds of start-up)."""
    return import_quietly("basic_pitch.note_creation")


def onnx_model_path() -> Path:
    """The ONNX Basic Pitch model shipped inside the installed basic-pitch wheel."""
    package = import_quietly("basic_pitch")
    return Path(package.ICASSP_2022_MODEL_PATH).parent / "nmp.onnx"


def min_note_frames(min_note_ms: float) -> int:
    """Basic Pitch's minimum note length in frames (as basic_pitch.inference.predict)."""
    return int(np.round(min_note_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP)))


def frame_times(frames: np.ndarray) -> np.ndarray:
    """Seconds of absolute model-frame indices, exactly as `model_frames_to_time`.

    basic-pitch maps frame i of the unwrapped output to
    ``frames_to_time(i) - offset * floor(i / 172)``; the mapping depends on the absolute
    index, so streams must pass indices counted from the start of the song.

    Args:
        frames: integer frame indices.

    Returns:
        float64 seconds, one per index.
    """
    idx = np.asarray(frames)
    # librosa.frames_to_time(idx, sr, hop_length) written out (frames_to_samples, then
    # samples_to_time): the same integer samples and the same division, so the same floats,
    # without importing librosa (and numba, scipy) into the service.
    original = (idx * FFT_HOP).astype(int) / float(AUDIO_SAMPLE_RATE)
    return original - (_WINDOW_OFFSET * np.floor(idx / ANNOT_N_FRAMES))
