"""The Basic Pitch ONNX model on onnxruntime: loaded and warmed once per process."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tabagent.errors import ModelError
from tabagent.serving.model import ModelInfo
from transcriber_svc.basicpitch import AUDIO_N_SAMPLES, AUDIO_SAMPLE_RATE, onnx_model_path

log = logging.getLogger(__name__)

_INPUT = "serving_default_input_2:0"
_OUTPUTS = ("StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0")


@dataclass
class ModelOutput:
    """Model activations for a batch of windows: (n, 172, 88), (n, 172, 88), (n, 172, 264)."""

    note: np.ndarray
    onset: np.ndarray
    contour: np.ndarray

    def __len__(self) -> int:
        return int(self.note.shape[0])

    def split(self, sizes: list[int]) -> list[ModelOutput]:
        """Cut a batch back into the requests it was made of."""
        out, start = [], 0
        for size in sizes:
            rows = slice(start, start + size)
            out.append(ModelOutput(self.note[rows], self.onset[rows], self.contour[rows]))
            start += size
        return out


def _version() -> str:
    try:
        return importlib.metadata.version("basic-pitch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class BasicPitchModel:
    """Basic Pitch (ICASSP 2022) as an onnxruntime session.

    Args:
        path: the ONNX file; default: nmp.onnx inside the installed basic-pitch wheel.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        device: "cpu", "cuda" or "auto" (CUDA when onnxruntime has it).
    """

    def __init__(self, path: Path | None = None, threads: int = 0, device: str = "auto") -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else onnx_model_path()
        if not self.path.is_file():
            raise ModelError(f"Basic Pitch model not found at {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        want_cuda = device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in available)
        if want_cuda and "CUDAExecutionProvider" not in available:
            raise ModelError(f"device {device!r} asked for, but onnxruntime has no CUDA provider")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        started = time.perf_counter()
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.info = ModelInfo(
            name="basic-pitch",
            version=_version(),
            backend="onnxruntime",
            device="cuda:0" if want_cuda else "cpu",
            sample_rate=AUDIO_SAMPLE_RATE,
        )
        self.warm = False  # set by transcriber_svc.holder.warm_up
        log.info(
            "loaded Basic Pitch %s (%s, %s, %d threads) in %.2f s",
            self.info.version, self.path.name, self.info.device, threads, time.perf_counter() - started,
        )

    def forward(self, windows: np.ndarray) -> ModelOutput:
        """Run a batch of windows.

        Args:
            windows: (n, AUDIO_N_SAMPLES, 1) float32 audio at 22,050 Hz.

        Returns:
            The note, onset and contour activations of every window.
        """
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (AUDIO_N_SAMPLES, 1):
            raise ValueError(f"windows must be (n, {AUDIO_N_SAMPLES}, 1), got {x.shape}")
        if x.shape[0] == 0:
            return ModelOutput(
                np.zeros((0, 172, 88), np.float32),
                np.zeros((0, 172, 88), np.float32),
                np.zeros((0, 172, 264), np.float32),
            )
        note, onset, contour = self.session.run(list(_OUTPUTS), {_INPUT: x})
        return ModelOutput(note, onset, contour)

    def forward_each(self, windows: np.ndarray) -> ModelOutput:
        """Run windows one forward pass each, as basic_pitch's run_inference does.

        With more than one intra-op thread, onnxruntime splits work by problem size, so a
        window's activations can differ in the last bit (about 1e-7) with the batch it
        ran in. One window per pass makes every stream's activations independent of how
        its audio was chunked, bit for bit.
        """
        if windows.shape[0] <= 1:
            return self.forward(windows)
        parts = [self.forward(windows[i : i + 1]) for i in range(windows.shape[0])]
        return ModelOutput(
            np.concatenate([p.note for p in parts]),
            np.concatenate([p.onset for p in parts]),
            np.concatenate([p.contour for p in parts]),
        )
