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


CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderChoice:
    """Which onnxruntime execution providers a session asks for, and the device it reports."""

    providers: list[str | tuple[str, dict[str, str]]]
    device: str         # "cpu" or "cuda:<n>"
    reason: str         # why, for the log line

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def choose_providers(device: str, available: list[str]) -> ProviderChoice:
    """The providers for TRANSCRIBER_DEVICE given what this onnxruntime build offers.

    Args:
        device: "auto" (CUDA when the build has it: onnxruntime-gpu), "cpu", "cuda" or "cuda:<n>".
        available: onnxruntime.get_available_providers().

    Raises:
        ModelError: CUDA asked for by name, and this onnxruntime has no CUDA provider.
    """
    if device == "cpu":
        return ProviderChoice([CPU], "cpu", "TRANSCRIBER_DEVICE=cpu")
    if device == "auto" and CUDA not in available:
        return ProviderChoice([CPU], "cpu", "auto: this onnxruntime build has no CUDA provider "
                              "(install onnxruntime-gpu for GPUs)")
    index = device.partition(":")[2] or "0"
    if device not in ("auto", "cuda") and not (device.startswith("cuda:") and index.isdigit()):
        raise ModelError(f"device {device!r}: use auto, cpu, cuda or cuda:<n>")
    if CUDA not in available:
        raise ModelError(f"device {device!r} asked for, but onnxruntime has no CUDA provider "
                         f"(it has {', '.join(available)}): install onnxruntime-gpu, or use TRANSCRIBER_DEVICE=cpu")
    # CPU stays listed after CUDA: onnxruntime places the few nodes CUDA lacks there.
    return ProviderChoice([(CUDA, {"device_id": index}), CPU], f"cuda:{index}",
                          "auto: onnxruntime has CUDA" if device == "auto" else f"TRANSCRIBER_DEVICE={device}")


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
        device: "cpu", "cuda", "cuda:<n>" or "auto" (CUDA when onnxruntime has it; see
            `choose_providers`).
    """

    def __init__(self, path: Path | None = None, threads: int = 0, device: str = "auto") -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else onnx_model_path()
        if not self.path.is_file():
            raise ModelError(f"Basic Pitch model not found at {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.inter_op_num_threads = 1
        choice = choose_providers(device, ort.get_available_providers())
        if choice.cuda and hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu[cuda,cudnn] ships CUDA and cuDNN as pip packages: load them first.
            try:
                ort.preload_dlls()
            except Exception as exc:  # the session below says whether CUDA works after all
                log.warning("onnxruntime could not preload the CUDA libraries: %s", exc)
        started = time.perf_counter()
        self.session = ort.InferenceSession(str(self.path), options, providers=choice.providers)
        running = self.session.get_providers()
        device_name = choice.device
        if choice.cuda and running[:1] != [CUDA]:
            # onnxruntime falls back to the CPU when the CUDA libraries do not load.
            message = (f"onnxruntime could not start its CUDA provider (the session runs on {', '.join(running)}); "
                       "check the NVIDIA driver and the CUDA/cuDNN libraries of onnxruntime-gpu")
            if device != "auto":
                raise ModelError(message)
            log.warning("%s; running on the CPU", message)
            device_name = "cpu"
        self.providers = running
        self.info = ModelInfo(
            name="basic-pitch",
            version=_version(),
            backend="onnxruntime",
            device=device_name,
            sample_rate=AUDIO_SAMPLE_RATE,
        )
        self.warm = False  # set by transcriber_svc.holder.warm_up
        log.info(
            "loaded Basic Pitch %s (%s) in %.2f s: runs on %s (%s; onnxruntime %s, providers %s, %d threads)",
            self.info.version, self.path.name, time.perf_counter() - started, device_name, choice.reason,
            ort.__version__, ", ".join(running), threads,
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
