"""Segment runners: one model forward pass per segment, optionally batched across streams.

A stream hands a runner one padded segment (channels, segment_length) and the indices of
the sources it needs, and gets those sources back (sources, channels, segment_length).
`SegmentRunner` runs each call on its own (up to `concurrency` at once, from the
streams' worker threads); `BatchingSegmentRunner` gathers calls from concurrent streams
(and the segments one stream keeps in flight) for up to `max_wait` seconds (or until
`max_batch` are waiting) and runs them as one batch. HTDemucs normalises and processes
every batch item on its own, so batched results equal unbatched ones to float tolerance
(only the BLAS reduction order can differ).

With `accel.prune` a runner computes only the requested sources with a pruned copy of
its model (separator_svc.accel.prune_sources; one per set of sources, made on first use);
a batch runs the union of its segments' sources. Precision (autocast), torch.compile and
the per-pass thread count come from the same `Acceleration`.

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
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import torch
from opentelemetry import context as otel_context
from opentelemetry import trace
from torch import nn

from separator_svc.accel import (
    Acceleration,
    ThreadBudget,
    autocast,
    can_prune,
    compiled,
    intra_op_threads,
    prune_sources,
    rewrite_convs,
    transformer_in_bf16,
)
from tabagent.errors import ModelError

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Sources = tuple[int, ...]
# One waiting segment: its audio, the sources it needs, its result (those sources and the
# batch size it ran in), and the trace context of the stream that sent it.
_Item = tuple[torch.Tensor, Sources, "Future[tuple[torch.Tensor, int]]", otel_context.Context]


class SegmentRunner:
    """Runs one model on one segment (or batch) at a time per slot; thread-safe.

    Args:
        model: the model (already on `device`, in eval mode).
        device: where it runs.
        name: the model's name on spans (a bag model's signature).
        accel: precision, pruning, compile and threads of the forward passes (the
            defaults: fp32, every source, the calling thread's torch threads).
        concurrency: forward passes allowed at once (1 serialises them).
        budget: threads shared with the bag's other runners (default: `accel.threads`
            for every pass).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str = "cpu",
        name: str = "",
        accel: Acceleration | None = None,
        concurrency: int = 1,
        budget: ThreadBudget | None = None,
    ) -> None:
        self.model = model
        self.budget = budget
        self.device = torch.device(device)
        self.name = name or str(getattr(model, "_sig", "")) or type(model).__name__
        self.accel = accel or Acceleration(workers=1, threads=0, prune=False, rewrite="off")
        self.sources = len(getattr(model, "sources", ()))
        self._prunable = self.accel.prune and can_prune(model)
        self._rewrite = self.accel.rewrite == "on" or (self.accel.rewrite == "auto" and self.device.type != "cuda")
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._variants_lock = threading.Lock()
        self._variants: dict[Sources, nn.Module] = {}
        self._rewritten: dict[int, tuple[nn.Module, nn.Module]] = {}  # layers shared by the variants
        self._count_lock = threading.Lock()
        self.calls = 0
        self.batches = 0
        self.on_batch: Callable[[int], None] | None = None  # e.g. a batch-size histogram

    def _all(self) -> Sources:
        return tuple(range(self.sources))

    def variant(self, sources: Sources) -> tuple[nn.Module, Sources]:
        """The module computing `sources`, and the sources it returns (in order).

        Pruned when the runner prunes, else the whole model (every source).
        """
        computed = sources if self._prunable else self._all()
        with self._variants_lock:
            module = self._variants.get(computed)
            if module is None:
                module = prune_sources(self.model, computed)
                if self._rewrite:
                    module = rewrite_convs(module, self._rewritten)
                if self.accel.precision == "bf16-transformer":
                    module = transformer_in_bf16(module, str(self.device))
                module = compiled(module, self.accel)
                self._variants[computed] = module
        return module, computed

    def run(self, segment: torch.Tensor, sources: Sequence[int] | None = None) -> torch.Tensor:
        """Separate one segment.

        Args:
            segment: (channels, length) float32 on the CPU, already padded to the
                model's segment length.
            sources: indices of the sources wanted, in the order wanted (None: all).

        Returns:
            (len(sources), channels, length) float32 on the CPU.
        """
        trace.get_current_span().set_attribute("batch.size", 1)
        return self.run_batch(segment[None], sources=sources)[0]

    def run_batch(
        self,
        batch: torch.Tensor,
        parent: otel_context.Context | None = None,
        links: list[trace.Link] | None = None,
        sources: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Separate a (batch, channels, length) tensor in one forward pass.

        Args:
            batch: the segments.
            parent: the trace context of the forward span (default: the current one).
            links: spans of the other segments in the batch.
            sources: indices of the sources wanted, in order (None: all).

        Returns:
            (batch, len(sources), channels, length) float32 on the CPU.
        """
        wanted = self._all() if sources is None else tuple(int(s) for s in sources)
        module, computed = self.variant(wanted)
        attributes: dict[str, str | int] = {"batch.size": int(batch.shape[0]), "device": str(self.device),
                                            "model.name": self.name, "sources": len(computed)}
        threads = self.budget.share() if self.budget is not None else intra_op_threads(self.accel.threads)
        with self._slots, tracer.start_as_current_span(
            "separate.forward", context=parent, links=links, attributes=attributes
        ), torch.no_grad(), threads:
            try:
                with autocast(self.accel, str(self.device)):
                    out = module(batch.to(self.device))
            except RuntimeError as exc:  # e.g. CUDA out of memory
                raise ModelError(f"model forward pass failed: {exc}") from exc
            if computed != wanted:
                out = out[:, [computed.index(s) for s in wanted]]
            out = out.float().cpu()
        with self._count_lock:
            self.calls += batch.shape[0]
            self.batches += 1
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
        accel: Acceleration | None = None,
    ) -> None:
        super().__init__(model, device, name, accel)
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="segment-batcher", daemon=True)
        self._closed = False
        self._worker.start()

    def run(self, segment: torch.Tensor, sources: Sequence[int] | None = None) -> torch.Tensor:
        """Separate one segment, batched with whatever other streams send meanwhile."""
        if self._closed:
            raise ModelError("segment runner is closed")
        wanted = self._all() if sources is None else tuple(int(s) for s in sources)
        future: Future[tuple[torch.Tensor, int]] = Future()
        self._queue.put((segment, wanted, future, otel_context.get_current()))
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
            live = [item for item in group if item[2].set_running_or_notify_cancel()]
            if not live:
                continue
            # One pass for the union of the sources the segments need, in model order.
            union = tuple(sorted({s for _, wanted, _, _ in live for s in wanted}))
            links = [trace.Link(trace.get_current_span(ctx).get_span_context()) for _, _, _, ctx in live[1:]]
            try:
                out = self.run_batch(torch.stack([seg for seg, _, _, _ in live]), live[0][3], links, union)
            except BaseException as exc:
                for _, _, fut, _ in live:
                    fut.set_exception(exc)
                continue
            log.debug("ran a batch of %d segments", len(live))
            for i, (_, wanted, fut, _) in enumerate(live):
                rows = out[i] if wanted == union else out[i, [union.index(s) for s in wanted]]
                fut.set_result((rows, len(live)))

    def close(self) -> None:
        """Stop the batching thread after the work already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=60)
