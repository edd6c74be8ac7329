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

Tracing: the caller's current span (the stream's `transcribe.model`) gets the size of
the batch its windows ran in. A batch of several streams is a `transcribe.forward` span
in the batcher task, parented explicitly to the first request's context and linked to
the others' (that task was started from whichever stream came first, so its own
context belongs to no one in particular).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from transcriber_svc.model import BasicPitchModel, ModelOutput

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_Request = tuple[np.ndarray, "asyncio.Future[tuple[ModelOutput, int]]", otel_context.Context]


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
        on_batch: called with the size of every forward pass (1), e.g. a histogram.
    """

    def __init__(
        self, model: BasicPitchModel, executor: Executor, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.model = model
        self.executor = executor
        self.on_batch = on_batch
        self.batches = 0

    async def run(self, windows: np.ndarray) -> ModelOutput:
        loop = asyncio.get_running_loop()
        self.batches += 1
        trace.get_current_span().set_attribute("batch.size", 1)
        output = await loop.run_in_executor(self.executor, self.model.forward_each, windows)
        if self.on_batch is not None:
            for _ in range(windows.shape[0]):
                self.on_batch(1)
        return output

    async def close(self) -> None:
        return None


class BatchingRunner:
    """Dynamic batching of windows across streams.

    Up to `parallel` batches run at once (one per executor thread). A batch is formed
    only when a thread is free, so while every thread is busy the waiting windows pile up
    into the next batch: batches stay small (low latency) when there is room and grow
    under load, and the parts of one song still run side by side on a multi-core CPU.

    Args:
        model: the warm model.
        executor: threads for the forward passes.
        max_batch: most windows in one forward pass (a larger request runs alone).
        max_wait: longest a request waits for others to join its batch, in seconds.
        on_batch: called with the windows of every forward pass, e.g. a histogram.
        parallel: forward passes in flight at once (at most the executor's threads).
    """

    def __init__(
        self,
        model: BasicPitchModel,
        executor: Executor,
        max_batch: int,
        max_wait: float,
        on_batch: Callable[[int], None] | None = None,
        parallel: int = 1,
    ) -> None:
        if max_batch < 1 or max_wait < 0 or parallel < 1:
            raise ValueError("max_batch and parallel must be >= 1 and max_wait >= 0")
        self.model = model
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_batch = on_batch
        self.parallel = parallel
        self._queue: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.largest_batch = 0

    async def run(self, windows: np.ndarray) -> ModelOutput:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[ModelOutput, int]] = loop.create_future()
        self._queue.append((windows, future, otel_context.get_current()))
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="transcriber-batcher")
        output, size = await future
        trace.get_current_span().set_attribute("batch.size", size)
        return output

    async def _work(self) -> None:
        free = asyncio.Semaphore(self.parallel)
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await free.acquire()
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
                free.release()
                continue
            task = asyncio.create_task(self._run(batch, free), name="transcriber-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Request], free: asyncio.Semaphore) -> None:
        """One forward pass for `batch`; hands every stream its rows, then frees the slot."""
        loop = asyncio.get_running_loop()
        try:
            sizes = [w.shape[0] for w, _, _ in batch]
            total = sum(sizes)
            links = [trace.Link(trace.get_current_span(ctx).get_span_context()) for _, _, ctx in batch[1:]]
            span = tracer.start_span("transcribe.forward", context=batch[0][2], links=links,
                                     attributes={"batch.size": total, "streams": len(batch),
                                                 "model.name": self.model.info.name,
                                                 "device": self.model.info.device})
            try:
                with trace.use_span(span, end_on_exit=True):
                    output = await loop.run_in_executor(
                        self.executor, self.model.forward, np.concatenate([w for w, _, _ in batch])
                    )
            except asyncio.CancelledError:  # the runner is closing
                for _, future, _ in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every waiting stream sees the failure
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            self.batches += 1
            self.largest_batch = max(self.largest_batch, total)
            if self.on_batch is not None:
                self.on_batch(total)
            for (_, future, _), part in zip(batch, output.split(sizes), strict=True):
                if not future.done():
                    future.set_result((part, total))
        finally:
            free.release()

    def _pending_windows(self) -> int:
        return sum(w.shape[0] for w, f, _ in self._queue if not f.done())

    def _take(self) -> list[_Request]:
        batch: list[_Request] = []
        total = 0
        while self._queue:
            windows, future, ctx = self._queue[0]
            if future.done():            # its stream was cancelled while waiting
                self._queue.popleft()
                continue
            if batch and total + windows.shape[0] > self.max_batch:
                break
            self._queue.popleft()
            batch.append((windows, future, ctx))
            total += windows.shape[0]
        return batch

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        while self._queue:
            _, future, _ = self._queue.popleft()
            future.cancel()
