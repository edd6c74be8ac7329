"""Segment runners: one model forward pass per segment, optionally batched across streams.

A stream hands a runner one padded segment (channels, segment_length) and gets the
model's sources back (sources, channels, segment_length). `SegmentRunner` runs each
call on its own; `BatchingSegmentRunner` gathers calls from concurrent streams for up
to `max_wait` seconds (or until `max_batch` are waiting) and runs them as one batch.
HTDemucs normalises and processes every batch item on its own, so batched results equal
unbatched ones to float tolerance (only the BLAS reduction order can differ).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import torch
from torch import nn

from tabagent.errors import ModelError

log = logging.getLogger(__name__)


class SegmentRunner:
    """Runs one model on one segment at a time (thread-safe: calls are serialised)."""

    def __init__(self, model: nn.Module, device: str = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self.calls = 0
        self.batches = 0
        self.on_batch: Callable[[int], None] | None = None  # e.g. a batch-size histogram

    def run(self, segment: torch.Tensor) -> torch.Tensor:
        """Separate one segment.

        Args:
            segment: (channels, length) float32 on the CPU, already padded to the
                model's segment length.

        Returns:
            (sources, channels, length) float32 on the CPU.
        """
        return self.run_batch(segment[None])[0]

    def run_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Separate a (batch, channels, length) tensor in one forward pass."""
        with self._lock, torch.no_grad():
            try:
                out = self.model(batch.to(self.device))
            except RuntimeError as exc:  # e.g. CUDA out of memory
                raise ModelError(f"model forward pass failed: {exc}") from exc
            self.calls += batch.shape[0]
            self.batches += 1
        if self.on_batch is not None:
            self.on_batch(int(batch.shape[0]))
        return out.float().cpu()

    def close(self) -> None:
        """Nothing to release for the unbatched runner."""


class BatchingSegmentRunner(SegmentRunner):
    """Gathers concurrent `run` calls into batches of up to `max_batch` segments.

    The first waiting call starts a batch; it is run once `max_batch` calls are waiting
    or `max_wait` seconds have passed since it arrived, whichever is first. A single
    stream therefore waits at most `max_wait` extra per segment.
    """

    def __init__(
        self, model: nn.Module, device: str = "cpu", max_batch: int = 4, max_wait: float = 0.01
    ) -> None:
        super().__init__(model, device)
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[tuple[torch.Tensor, Future[torch.Tensor]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="segment-batcher", daemon=True)
        self._closed = False
        self._worker.start()

    def run(self, segment: torch.Tensor) -> torch.Tensor:
        """Separate one segment, batched with whatever other streams send meanwhile."""
        if self._closed:
            raise ModelError("segment runner is closed")
        future: Future[torch.Tensor] = Future()
        self._queue.put((segment, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            pending = [item]
            deadline = time.monotonic() + self.max_wait
            while len(pending) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    more = self._queue.get(timeout=max(left, 0.0)) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                pending.append(more)
            self._run_pending(pending)

    def _run_pending(self, pending: list[tuple[torch.Tensor, Future[torch.Tensor]]]) -> None:
        # Segments of different shapes (another model's segment length) run apart.
        groups: dict[tuple[int, ...], list[tuple[torch.Tensor, Future[torch.Tensor]]]] = {}
        for seg, fut in pending:
            groups.setdefault(tuple(seg.shape), []).append((seg, fut))
        for group in groups.values():
            live = [(seg, fut) for seg, fut in group if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                out = self.run_batch(torch.stack([seg for seg, _ in live]))
            except BaseException as exc:
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            log.debug("ran a batch of %d segments", len(live))
            for i, (_, fut) in enumerate(live):
                fut.set_result(out[i])

    def close(self) -> None:
        """Stop the batching thread after the work already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=60)
