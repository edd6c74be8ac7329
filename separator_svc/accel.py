"""How HTDemucs forward passes run fast: threads, pipelining, attention kernel, pruned sources, precision.

Every setting here is one of two kinds, and the benchmark (bench/bench_demucs_cpu.py)
bounds each against the plain fp32 model's output:

* **Lossless** (on by default; the stems differ only by float rounding, SDR well above
  40 dB against the previous code):

  - `attention="sdpa"`: torch's native multi-head-attention "fast path" (taken by
    HTDemucs's self-attention layers in eval mode) computes the attention matrix with
    bmm + softmax; switching it off sends those layers through
    `scaled_dot_product_attention` (a flash kernel on CPU), as the cross-attention
    layers already are. Process-wide (`torch.backends.mha`), set when a Demucs model
    is loaded.
  - `prune=True`: only the requested sources are computed. HTDemucs's last frequency
    and time decoder layers are transposed convolutions whose output channels are
    grouped by source, followed by nothing that mixes sources (no norm, no activation,
    complex-as-channels masking): slicing their weights to the requested sources gives
    those sources' outputs unchanged and skips the rest of the last layers, the mask
    and the inverse STFTs of the others. A bag's specialists (htdemucs_ft) each compute
    only the requested sources they are weighted for.
  - `workers` and `threads`: a stream keeps up to `workers` segments in flight, each
    forward pass on `threads` intra-op threads. On a CPU, two one-thread passes side
    by side beat one two-thread pass (no OpenMP barrier spinning between hundreds of
    small ops, and far better when other processes share the cores). Thread counts
    are per calling thread, so other torch users in the process keep theirs.

* **Lossy** (opt-in, `precision`): `bf16` / `fp16` run the model under autocast
  (matmuls and convolutions in 16-bit, the STFT, masks and iSTFT in fp32); `tf32`
  lets CUDA matmuls and convolutions use TF32. `compile` wraps each model in
  `torch.compile` (mode "default", "reduce-overhead" = CUDA graphs, or
  "max-autotune"); it changes rounding only, but compiling the full model takes
  minutes on a CPU, so it is meant for GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
ATTENTION = ("sdpa", "native")


@dataclass(frozen=True)
class Acceleration:
    """Settings of the separator's forward passes (see the module docstring).

    Attributes:
        workers: segments in flight per stream and forward passes at once per model
            (0 = auto: the CPU cores, at most 4, on a CPU; 2 on a GPU).
        threads: torch intra-op threads per forward pass (0 = auto: cores / workers).
        attention: "sdpa" (flash attention for every layer) or "native" (torch's MHA
            fast path for self-attention, the previous behaviour).
        prune: compute only the requested sources.
        precision: fp32 (exact), tf32 (CUDA), bf16, fp16 (lossy, opt-in).
        compile: torch.compile mode, or "off".
    """

    workers: int = 0
    threads: int = 0
    attention: str = "sdpa"
    prune: bool = True
    precision: str = "fp32"
    compile: str = "off"

    def check(self) -> None:
        """Raise ValueError naming a bad setting."""
        if self.workers < 0 or self.threads < 0:
            raise ValueError("workers and threads must be >= 0 (0 = auto)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile mode {self.compile!r} is not one of {', '.join(COMPILE_MODES)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention {self.attention!r} is not one of {', '.join(ATTENTION)}")

    def resolved(self, device: str) -> Acceleration:
        """The same settings with the automatic values filled in for `device`."""
        self.check()
        cuda = torch.device(device).type == "cuda"
        cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
        workers = self.workers or (2 if cuda else min(cores, 4))
        threads = self.threads or max(1, cores // workers)
        return replace(self, workers=workers, threads=threads)

    @property
    def lossy(self) -> bool:
        """Whether the stems may differ from fp32 by more than float rounding."""
        return self.precision in ("bf16", "fp16")

    def describe(self) -> str:
        """One line for logs and ModelInfo."""
        parts = [f"{self.workers} worker(s) x {self.threads} thread(s)", f"attention {self.attention}",
                 "pruned sources" if self.prune else "all sources", self.precision]
        if self.compile != "off":
            parts.append(f"torch.compile {self.compile}")
        return ", ".join(parts)


TODAY = Acceleration(workers=1, threads=0, attention="native", prune=False)
"""The settings before this module existed (one pass at a time on every core), for benchmarks."""


def apply_process_settings(accel: Acceleration, device: str) -> None:
    """Set the process-wide torch switches `accel` needs (attention kernel, TF32)."""
    torch.backends.mha.set_fastpath_enabled(accel.attention == "native")
    if accel.precision == "tf32" and torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(accel: Acceleration, device: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a forward pass (a no-op for fp32 and tf32)."""
    if accel.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if accel.precision == "bf16" else torch.float16
        return torch.autocast(torch.device(device).type, dtype=dtype)
    return contextlib.nullcontext()


@contextlib.contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch threads in this thread (0 leaves them alone).

    torch's intra-op thread count is a per-thread setting (OpenMP's nthreads ICV), so
    this changes nothing for other threads running at the same time; the thread's own
    count is restored afterwards.
    """
    before = torch.get_num_threads()
    if not threads or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- pruned sources ----------------------------------------------------------------------------


def can_prune(model: Any) -> bool:
    """Whether `prune_sources` gives exactly the kept sources' outputs for this model."""
    from demucs.htdemucs import HTDemucs

    if not isinstance(model, HTDemucs) or not getattr(model, "cac", False):
        return False  # without complex-as-channels, a Wiener filter mixes the sources
    for layers in (model.decoder, model.tdecoder):
        if not len(layers):
            return False
        last = layers[-1]
        conv = getattr(last, "conv_tr", None)
        if not (getattr(last, "last", False) and isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d))):
            return False
        if conv.groups != 1 or not isinstance(getattr(last, "norm2", None), nn.Identity):
            return False
        if conv.out_channels % len(model.sources):
            return False
    return True


def _pruned_layer(layer: Any, keep: Sequence[int], sources: int) -> Any:
    """A copy of a last decoder layer whose transposed convolution outputs only `keep`."""
    conv = layer.conv_tr
    per = conv.out_channels // sources
    channels = [s * per + j for s in keep for j in range(per)]
    new_conv = copy.copy(conv)
    new_conv._parameters = dict(conv._parameters)
    new_conv.out_channels = len(channels)
    index = torch.tensor(channels, device=conv.weight.device)
    # ConvTranspose weights are (in, out / groups, *kernel): outputs on dim 1.
    new_conv.weight = nn.Parameter(conv.weight.detach().index_select(1, index).contiguous(), requires_grad=False)
    if conv.bias is not None:
        new_conv.bias = nn.Parameter(conv.bias.detach().index_select(0, index).contiguous(), requires_grad=False)
    new_layer = copy.copy(layer)
    new_layer._modules = dict(layer._modules)
    new_layer.conv_tr = new_conv
    return new_layer


def prune_sources(model: Any, keep: Sequence[int]) -> Any:
    """An HTDemucs computing only the sources at indices `keep` (in that order).

    Shares every weight with `model` except the two last decoder layers' (a few
    kilobytes); `model` itself is unchanged. Returns `model` when `keep` is every
    source in order.

    Raises:
        ValueError: when the model cannot be pruned exactly (see `can_prune`).
    """
    keep = [int(k) for k in keep]
    sources = len(model.sources)
    if keep == list(range(sources)):
        return model
    if not keep or len(set(keep)) != len(keep) or not all(0 <= k < sources for k in keep):
        raise ValueError(f"bad source indices {keep} for {sources} sources")
    if not can_prune(model):
        raise ValueError(f"{type(model).__name__} cannot be pruned exactly")
    new = copy.copy(model)
    new._modules = dict(model._modules)
    new.sources = [model.sources[k] for k in keep]
    new.decoder = nn.ModuleList([*model.decoder[:-1], _pruned_layer(model.decoder[-1], keep, sources)])
    new.tdecoder = nn.ModuleList([*model.tdecoder[:-1], _pruned_layer(model.tdecoder[-1], keep, sources)])
    return new


def compiled(model: nn.Module, accel: Acceleration) -> nn.Module:
    """`model` wrapped in torch.compile when `accel.compile` asks for it."""
    if accel.compile == "off":
        return model
    log.info("compiling %s with torch.compile(mode=%r); the first pass of each shape compiles",
             type(model).__name__, accel.compile)
    return torch.compile(model, mode=accel.compile, dynamic=False)  # type: ignore[return-value]
