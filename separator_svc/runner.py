"""Segment runners: one model forward pass per segment, optionally batched across streams.

A stream hands a runner one padded segment (channels, segment_length) and gets the
model's sources back (sources, channels, segment_length). `SegmentRunner` runs each
call on its own; `BatchingSegmentRunner` gathers calls from concurrent streams for up
to `max_wait` seconds (or until `max_batch` are waiting) and runs them as one batch.
HTDemucs normalises and processes every batch item on its own, so batched results equal
unbatched ones to float tolerance (only the BLAS reduction order can differ).

Every forward pass is a `separate.forward` span (batch size, device, model). Unbatched,
it is a child of the calling thread's current span (the stream's segment); batched, it
runs in the batching thread, so it takes the first waiting segment's context as its
parent, explicitly, and links the other segments' spans (each in its own song's trace).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import torch
from opentelemetry import context as otel_context
from opentelemetry import trace
from torch import nn

from tabagent.errors import ModelError

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

# One waiting segment: its audio, its result (sources and the batch size it ran in), and
# the trace context of the stream that sent it.
_Item = tuple[torch.Tensor, "Future[tuple[torch.Tensor, int]]", otel_context.Context]


class SegmentRunner:
    """Runs one model on one segment at a time (thread-safe: calls are serialised).

    Args:
        model: the model (already on `device`, in eval mode).
        device: where it runs.
        name: the model's name on spans (a bag model's signature).
    """

    def __init__(self, model: nn.Module, device: str = "cpu", name: str = "") -> None:
        self.model = model
        self.device = torch.device(device)
        self.name = name or str(getattr(model, "_sig", "")) or type(model).__name__
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
        trace.get_current_span().set_attribute("batch.size", 1)
        return self.run_batch(segment[None])[0]

    def run_batch(
        self,
        batch: torch.Tensor,
        parent: otel_context.Context | None = None,
        links: list[trace.Link] | None = None,
    ) -> torch.Tensor:
        """Separate a (batch, channels, length) tensor in one forward pass.

        Args:
            batch: the segments.
            parent: the trace context of the forward span (default: the current one).
            links: spans of the other segments in the batch.
        """
        attributes: dict[str, str | int] = {"batch.size": int(batch.shape[0]), "device": str(self.device),
                                            "model.name": self.name}
        with self._lock, tracer.start_as_current_span(
            "separate.forward", context=parent, links=links, attributes=attributes
        ), torch.no_grad():
            try:
                out = self.model(batch.to(self.device))
            except RuntimeError as exc:  # e.g. CUDA out of memory
                raise ModelError(f"model forward pass failed: {exc}") from exc
            self.calls += batch.shape[0]
            self.batches += 1
            out = out.float().cpu()
        if self.on_batch is not None:
            self.on_batch(int(batch.shape[0]))
        return out

    def close(self) -> None:
        """Nothing to release for the unbatched runner."""


class BatchingSegmentRunner(SegmentRunner):
    """Gathers concurrent `run` calls into batches of up to `max_batch` segments.

    The first waiting call starts a batch; it is run once `max_batch` calls are waiting
    or `max_wait` seconds have passed since it arrived, whichever is first. A single
    stream therefore waits at most `max_wait` extra per segment.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str = "cpu",
        max_batch: int = 4,
        max_wait: float = 0.01,
        name: str = "",
    ) -> None:
        super().__init__(model, device, name)
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="segment-batcher", daemon=True)
        self._closed = False
        self._worker.start()

    def run(self, segment: torch.Tensor) -> torch.Tensor:
        """Separate one segment, batched with whatever other streams send meanwhile."""
        if self._closed:
            raise ModelError("segment runner is closed")
        future: Future[tuple[torch.Tensor, int]] = Future()
        self._queue.put((segment, future, otel_context.get_current()))
        out, size = future.result()
        trace.get_current_span().set_attribute("batch.size", size)
        return out

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

    def _run_pending(self, pending: list[_Item]) -> None:
        # Segments of different shapes (another model's segment length) run apart.
        groups: dict[tuple[int, ...], list[_Item]] = {}
        for item in pending:
            groups.setdefault(tuple(item[0].shape), []).append(item)
        for group in groups.values():
            live = [item for item in group if item[1].set_running_or_notify_cancel()]
            if not live:
                continue
            links = [trace.Link(trace.get_current_span(ctx).get_span_context()) for _, _, ctx in live[1:]]
            try:
                out = self.run_batch(torch.stack([seg for seg, _, _ in live]), live[0][2], links)
            except BaseException as exc:
                for _, fut, _ in live:
                    fut.set_exception(exc)
                continue
            log.debug("ran a batch of %d segments", len(live))
            for i, (_, fut, _) in enumerate(live):
                fut.set_result((out[i], len(live)))

    def close(self) -> None:
        """Stop the batching thread after the work already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=60)
