"""The transcriber's warm model: Basic Pitch, warmed through the whole note path, and its runner."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tabagent import tuning
from tabagent.errors import NotReady
from tabagent.metrics import ServiceMetrics
from tabagent.notes import Note
from tabagent.v1 import audio_pb2
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
from transcriber_svc.config import TranscriberConfig
from transcriber_svc.model import BasicPitchModel
from transcriber_svc.pipeline import NoteTracker
from transcriber_svc.runner import BatchingRunner, DirectRunner, WindowRunner

log = logging.getLogger(__name__)


def plucked(notes: Sequence[Note], seconds: float, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """A plucked-string test tone: each note's first harmonics, decaying (warm-up audio).

    Returns:
        float32 mono samples, `seconds` long.
    """
    out = np.zeros(int(seconds * sample_rate), np.float32)
    for note in notes:
        start, end = int(note.start * sample_rate), min(out.size, int(note.end * sample_rate))
        t = np.arange(end - start) / sample_rate
        hz = 440.0 * 2.0 ** ((note.pitch - 69) / 12)
        tone = sum(np.sin(2 * np.pi * hz * k * t) * np.exp(-(1.8 + 0.3 * k) * t) / k for k in range(1, 9))
        out[start:end] += (note.velocity * 0.3 * tone).astype(np.float32)
    return out


def warm_up(model: BasicPitchModel) -> float:
    """Pay every first-call cost before serving: a forward pass and the decoding path.

    Runs a plucked test tone through the same code a stream uses (windowing, model,
    note decoding with pitch bends and frame times, post-processing), so that
    onnxruntime's first-run allocation and librosa/scipy's first calls happen here.

    Returns:
        Seconds spent.
    """
    started = time.perf_counter()
    notes = [Note(45, 0.2, 0.9, 0.8), Note(52, 0.9, 1.6, 0.8), Note(57, 1.6, 2.6, 0.8)]
    tracker = NoteTracker(tuning.standard("guitar"), "guitar")
    windows = tracker.push_audio(plucked(notes, seconds=3.0))
    tracker.add_outputs(model.forward_each(windows))
    tracker.add_outputs(model.forward(tracker.finish_audio()))
    found = tracker.flush()
    model.warm = True
    took = time.perf_counter() - started
    log.info("warmed Basic Pitch in %.2f s (%d test notes found)", took, len(found.notes))
    return took


class ModelHolder:
    """The service's one Basic Pitch model (tabagent.serving.WarmModel).

    Args:
        load: returns the model (may take seconds); warm() runs it in a thread.
        max_batch: windows per forward pass across streams (1: no batching).
        batch_wait: seconds a window waits for others to batch with.
        workers: threads for forward passes.
    """

    def __init__(
        self,
        load: Callable[[], BasicPitchModel],
        max_batch: int = 1,
        batch_wait: float = 0.005,
        workers: int = 1,
    ) -> None:
        self._load = load
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.workers = max(1, workers)
        self.model: BasicPitchModel | None = None
        self.runner: WindowRunner | None = None
        self.executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="basic-pitch")

    @classmethod
    def from_config(cls, config: TranscriberConfig) -> ModelHolder:
        """A holder that loads nmp.onnx from the basic-pitch wheel with the configured threads."""
        if config.max_batch > 1:
            # Batches in flight at once: as many as the cores hold at `threads` each.
            cores = os.cpu_count() or 1
            workers = max(1, min(config.max_streams, cores // (config.threads or cores)))
        else:
            workers = config.max_streams
        return cls(
            lambda: BasicPitchModel(threads=config.threads, device=config.device),
            config.max_batch,
            config.batch_wait,
            workers=workers,
        )

    @classmethod
    def of(cls, model: BasicPitchModel, max_batch: int = 1, batch_wait: float = 0.005, workers: int = 2) -> ModelHolder:
        """A holder over an already-loaded model (warm() still warms it if needed)."""
        return cls(lambda: model, max_batch, batch_wait, workers)

    def _load_and_warm(self) -> BasicPitchModel:
        model = self._load()
        if not model.warm:
            warm_up(model)
        return model

    async def warm(self, metrics: ServiceMetrics) -> audio_pb2.ModelInfo:
        """Load and warm the model in a thread and start its runner (batch sizes to `metrics`)."""
        model = await asyncio.to_thread(self._load_and_warm)
        if self.max_batch > 1:
            self.runner = BatchingRunner(model, self.executor, self.max_batch, self.batch_wait,
                                         metrics.observe_batch, parallel=self.workers)
        else:
            self.runner = DirectRunner(model, self.executor, metrics.observe_batch)
        self.model = model
        return model.info.to_proto()

    def get(self) -> tuple[BasicPitchModel, WindowRunner]:
        """The warm model and its runner; NotReady before warm() finished."""
        if self.model is None or self.runner is None:
            raise NotReady("the transcriber is still loading Basic Pitch; retry when health reports SERVING")
        return self.model, self.runner

    async def close(self) -> None:
        """Stop the batcher and the model threads."""
        if self.runner is not None:
            await self.runner.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
