"""A warm HTDemucs bag that separates songs as exact streams (torch and demucs live here).

`separator_svc.model.load_model` builds one when it finds a bag's weights; without weights
the separator falls back to the DSP model and never imports this module (nor torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from separator_svc.accel import Acceleration, ThreadBudget, apply_process_settings
from separator_svc.base import MODEL_CHANNELS, MODEL_RATE, ModelInfo, SeparatorModel, StemStream
from separator_svc.runner import BatchingSegmentRunner, SegmentRunner
from separator_svc.streaming import StreamingSeparator
from tabagent.errors import ModelError


class DemucsModel(SeparatorModel):
    """A warm HTDemucs bag that separates songs as exact streams.

    Args:
        bag: a demucs BagOfModels (every model an HTDemucs of the same segment).
        name: the model name it was loaded as.
        origin: where the weights came from (for logs and the info message).
        device: torch device the models run on.
        max_batch: >1 batches segments of concurrent streams into one forward pass.
        max_wait: longest a segment waits for others to batch with (seconds).
        accel: threads, pipelining, attention kernel, pruning, precision (see
            separator_svc.accel; default: the lossless fast settings).
    """

    def __init__(
        self,
        bag: Any,
        name: str,
        origin: str,
        device: str = "cpu",
        max_batch: int = 1,
        max_wait: float = 0.01,
        accel: Acceleration | None = None,
    ) -> None:
        from demucs.htdemucs import HTDemucs

        models = list(bag.models)
        for model in models:
            if not isinstance(model, HTDemucs):
                raise ModelError(
                    f"{name}: streaming supports HTDemucs bags, found {type(model).__name__}"
                )
            if model.samplerate != MODEL_RATE or model.audio_channels != MODEL_CHANNELS:
                raise ModelError(f"{name}: expected 44.1 kHz stereo models")
        lengths = {int(m.samplerate * m.segment) for m in models}
        if len(lengths) != 1:
            raise ModelError(f"{name}: the bag mixes segment lengths {sorted(lengths)}")
        self.bag = bag
        self.device = device
        self.segment_length = lengths.pop()
        self.segment_seconds = self.segment_length / MODEL_RATE
        self.sources = tuple(bag.sources)
        self.weights = [list(map(float, w)) for w in bag.weights]
        self.aliases = {"guitar": "other"} if "guitar" not in self.sources else {}
        self.accel = (accel or Acceleration()).resolved(device)
        apply_process_settings(self.accel, device)
        message = f"loaded from {origin}"
        if self.aliases:
            message += "; a 'guitar' stem is served from the 'other' source"
        message += f"; {self.accel.describe()}"
        if self.accel.lossy:
            message += " (reduced precision: stems differ from fp32)"
        sigs = ",".join(getattr(m, "_sig", "") for m in models if getattr(m, "_sig", ""))
        self.info = ModelInfo(
            name=name,
            version=f"demucs-{_demucs_version()}" + (f":{sigs}" if sigs else ""),
            backend="torch",
            device=str(torch.device(device)) if device != "cuda" else "cuda:0",
            fallback=False,
            message=message,
            sample_rate=MODEL_RATE,
        )
        self.runners: list[SegmentRunner] = []
        # Every CPU thread of the model, shared by whichever passes run at the moment.
        budget = None if self.accel.workers == 1 else ThreadBudget(self.accel.workers * self.accel.threads)
        for model in models:
            model.to(device).eval()
            if max_batch > 1:
                self.runners.append(
                    BatchingSegmentRunner(model, device, max_batch, max_wait, accel=self.accel)
                )
            else:
                self.runners.append(SegmentRunner(model, device, accel=self.accel, concurrency=self.accel.workers,
                                                  budget=budget))
        # Segments in flight run their forward passes here; enough threads for a batch
        # to fill from several streams' segments.
        self._pool: ThreadPoolExecutor | None = None
        if self.accel.workers > 1:
            self._pool = ThreadPoolExecutor(max(self.accel.workers, max_batch), thread_name_prefix="segment")

    def open_stream(
        self,
        stems: Sequence[str],
        overlap: float = 0.25,
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
    ) -> StemStream:
        """Start an exact streaming separation (see separator_svc.streaming)."""
        return StreamingSeparator(
            self.runners,
            self.weights,
            self.sources,
            self.stems_for(stems),
            self.segment_length,
            overlap=overlap,
            aliases=self.aliases,
            in_rate=in_rate,
            in_channels=in_channels,
            executor=self._pool,
            depth=self.accel.workers,
        )

    def warm_up(self) -> None:
        """One forward pass per model on a segment of quiet noise."""
        rng = np.random.default_rng(0)
        noise = rng.standard_normal((MODEL_CHANNELS, self.segment_length)).astype(np.float32)
        segment = torch.from_numpy(noise * 0.01)
        for runner in self.runners:
            runner.run(segment)

    def close(self) -> None:
        """Stop batching threads and the segment workers."""
        for runner in self.runners:
            runner.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _demucs_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("demucs")
    except PackageNotFoundError:
        return "unknown"
