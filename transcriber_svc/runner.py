"""Who runs the model for a stream's windows: one call per stream, or batched across streams.

A stream asks for its windows' activations with ``await runner.run(windows)``. The
`DirectRunner` runs each window on its own, like basic_pitch's run_inference, so results
are bit-identical to whole-file inference however the audio was chunked. The
`BatchingRunner` gathers the windows of concurrent streams for at most `max_wait`
seconds (or until `max_batch` windows) and runs them as one batch, then hands each
stream its rows. Basic Pitch's graph treats the windows of a batch independently: with
one onnxruntime intra-op thread (TRANSCRIBER_THREADS=1, the setting for batching on CPU)
batched activations are bit-identical to unbatched ones (tested); with several threads,
onnxruntime partitions the work by batch size and activations may differ by about 1e-7.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from transcriber_svc.model import BasicPitchModel, ModelOutput

log = logging.getLogger(__name__)


class WindowRunner(Protocol):
    """Runs Basic Pitch on a stream's windows, possibly together with other streams'."""

    async def run(self, windows: np.ndarray) -> ModelOutput:
        """Activations for (n, AUDIO_N_SAMPLES, 1) windows, in order."""
        ...

    async def close(self) -> None:
        """Stop background work."""
        ...


class DirectRunner:
    """One forward pass per window, in a worker thread.

    Args:
        model: the warm model.
        executor: threads for the forward passes.
    """

    def __init__(self, model: BasicPitchModel, executor: Executor) -> None:
        self.model = model
        self.executor = executor
        self.batches = 0

    async def run(self, windows: np.ndarray) -> ModelOutput:
        loop = asyncio.get_running_loop()
        self.batches += 1
        return await loop.run_in_executor(self.executor, self.model.forward_each, windows)

    async def close(self) -> None:
        return None


class BatchingRunner:
    """Dynamic batching of windows across streams.

    Args:
        model: the warm model.
        executor: threads for the forward passes.
        max_batch: most windows in one forward pass (a larger request runs alone).
        max_wait: longest a request waits for others to join its batch, in seconds.
    """

    def __init__(self, model: BasicPitchModel, executor: Executor, max_batch: int, max_wait: float) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.model = model
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: deque[tuple[np.ndarray, asyncio.Future[ModelOutput]]] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest_batch = 0

    async def run(self, windows: np.ndarray) -> ModelOutput:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ModelOutput] = loop.create_future()
        self._queue.append((windows, future))
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="transcriber-batcher")
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            deadline = time.monotonic() + self.max_wait
            while self._pending_windows() < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            sizes = [w.shape[0] for w, _ in batch]
            try:
                output = await loop.run_in_executor(
                    self.executor, self.model.forward, np.concatenate([w for w, _ in batch])
                )
            except Exception as exc:  # every waiting stream sees the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, sum(sizes))
            for (_, future), part in zip(batch, output.split(sizes), strict=True):
                if not future.done():
                    future.set_result(part)

    def _pending_windows(self) -> int:
        return sum(w.shape[0] for w, f in self._queue if not f.done())

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future[ModelOutput]]]:
        batch: list[tuple[np.ndarray, asyncio.Future[ModelOutput]]] = []
        total = 0
        while self._queue:
            windows, future = self._queue[0]
            if future.done():            # its stream was cancelled while waiting
                self._queue.popleft()
                continue
            if batch and total + windows.shape[0] > self.max_batch:
                break
            self._queue.popleft()
            batch.append((windows, future))
            total += windows.shape[0]
        return batch

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while self._queue:
            _, future = self._queue.popleft()
            future.cancel()
