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
  - `rewrite` (on by default on CPUs): two kinds of layer that torch runs slowly on a
    CPU are replaced by the same function in a faster form. Every decoder layer's
    transposed convolution (kernel 8, stride 4) becomes a sub-pixel convolution: an
    ordinary convolution with kernel 2 over the input padded by one on each side,
    producing the four output phases as channels, interleaved afterwards (oneDNN's
    direct convolution instead of col2im: 1.6-2.9x faster per layer here). The DConv
    residual branches' 1x1 convolutions become one batched matrix product (`baddbmm`,
    1.5-2x faster at their few channels).
  - `workers` and `threads`: a stream keeps up to `workers` segments in flight, and
    the model's `workers x threads` CPU threads are shared among the passes running at
    the moment (`ThreadBudget`): a pass that starts alone (a song's first segment, a
    short song) gets them all, two side by side one each. On a CPU, two one-thread
    passes side by side beat one two-thread pass (no OpenMP barrier spinning between
    hundreds of small ops, and far better when other processes share the cores).
    Thread counts are per calling thread, so other torch users in the process keep theirs.

* **Lossy** (opt-in, `precision`): `bf16` / `fp16` run the model under autocast
  (matmuls and convolutions in 16-bit, the STFT, masks and iSTFT in fp32);
  `bf16-transformer` only the cross-transformer (its matmuls and attention are half of
  a CPU forward pass; the convolutions, whose errors the decoders amplify, stay fp32); `tf32`
  lets CUDA matmuls and convolutions use TF32. `compile` wraps each model in
  `torch.compile` (mode "default", "reduce-overhead" = CUDA graphs, or
  "max-autotune"); it changes rounding only, but compiling the full model takes
  minutes on a CPU, so it is meant for GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from separator_svc.accel_settings import (  # noqa: F401  (the settings live apart: no torch to read them)
    ATTENTION,
    COMPILE_MODES,
    PRECISIONS,
    REWRITE,
    TODAY,
    Acceleration,
)

log = logging.getLogger(__name__)



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


class ThreadBudget:
    """Shares a model's CPU threads among the forward passes running at the moment.

    A pass that starts alone gets every thread (the first segment of a song, a short
    song's last one); one that starts while others run gets its share, so two passes
    side by side run on one thread each. Shared by all runners of a bag.
    """

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        self._lock = threading.Lock()
        self._active = 0

    @contextlib.contextmanager
    def share(self) -> Iterator[int]:
        """Count this pass in for the block; yields its thread count."""
        with self._lock:
            self._active += 1
            threads = max(1, self.total // self._active)
        try:
            with intra_op_threads(threads):
                yield threads
        finally:
            with self._lock:
                self._active -= 1


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


class _AutocastBlock(nn.Module):
    """Runs a block under bf16 autocast and hands fp32 tensors back."""

    def __init__(self, block: nn.Module, device_type: str) -> None:
        super().__init__()
        self.block = block
        self.device_type = device_type

    def forward(self, *args: Any) -> Any:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.block(*args)
        if isinstance(out, tuple):
            return tuple(o.float() for o in out)
        return out.float()


def transformer_in_bf16(model: Any, device: str) -> Any:
    """`model` (HTDemucs) with its cross-transformer under bf16 autocast; other weights shared."""
    if getattr(model, "crosstransformer", None) is None:
        return model
    new = copy.copy(model)
    new._modules = dict(model._modules)
    new.crosstransformer = _AutocastBlock(model.crosstransformer, torch.device(device).type)
    return new


# -- faster forms of slow layers -----------------------------------------------------------------


class SubpixelConvTranspose(nn.Module):
    """A ConvTranspose1d/2d with stride s and kernel m * s (along the first spatial axis),
    computed as an ordinary convolution with kernel m and the s output phases interleaved.

    Output position s * f + p is the sum over j < m of x[f - j] times tap p + j * s: a
    convolution over the input padded by m - 1 on both sides whose (p, out-channel)
    output channel holds the taps p + (m - 1 - i) * s at its offsets i.
    """

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.ConvTranspose1d | nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = conv.weight.detach()                       # (in, out, k[, 1])
        self.two_d = weight.dim() == 4
        k = int(conv.kernel_size[0])
        self.stride = int(conv.stride[0])
        self.taps = k // self.stride
        self.out_channels = int(conv.out_channels)
        w = weight[..., 0] if self.two_d else weight       # (in, out, k)
        order = [p + (self.taps - 1 - i) * self.stride for p in range(self.stride) for i in range(self.taps)]
        w = w[:, :, order].reshape(w.shape[0], self.out_channels, self.stride, self.taps)
        w = w.permute(2, 1, 0, 3).reshape(self.stride * self.out_channels, w.shape[0], self.taps)
        self.register_buffer("weight", (w[..., None] if self.two_d else w).contiguous())
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(self.out_channels, dtype=w.dtype,
                                                                            device=w.device)
        self.register_buffer("bias", bias.repeat(self.stride).contiguous())

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """Whether `conv` is a transposed convolution this form computes exactly."""
        if not isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            return False
        k, s = int(conv.kernel_size[0]), int(conv.stride[0])
        rest = all(int(v) == 1 for v in (*conv.kernel_size[1:], *conv.stride[1:], *conv.dilation))
        return (s > 1 and k % s == 0 and rest and conv.groups == 1 and not any(conv.padding)
                and not any(conv.output_padding) and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.taps - 1
        if self.two_d:
            out = F.conv2d(x, self.weight, self.bias, padding=(pad, 0))   # (B, s * out, F + m - 1, T)
            b, _, f, t = out.shape
            out = out.view(b, self.stride, self.out_channels, f, t).permute(0, 2, 3, 1, 4)
            return out.reshape(b, self.out_channels, f * self.stride, t)
        out = F.conv1d(x, self.weight, self.bias, padding=pad)             # (B, s * out, L + m - 1)
        b, _, n = out.shape
        out = out.view(b, self.stride, self.out_channels, n).permute(0, 2, 3, 1)
        return out.reshape(b, self.out_channels, n * self.stride)


class PointwiseConv(nn.Module):
    """A Conv1d with kernel 1 as one batched matrix product (out = bias + W @ x)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach()[:, :, 0].contiguous())  # (out, in)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias[:, None].contiguous())

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """Whether `conv` is a plain 1x1 Conv1d."""
        return (isinstance(conv, nn.Conv1d) and tuple(conv.kernel_size) == (1,) and tuple(conv.stride) == (1,)
                and tuple(conv.dilation) == (1,) and conv.groups == 1 and not any(conv.padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, self.weight.expand(x.shape[0], -1, -1), x)


def _swap(module: nn.Module, replace_leaf: Any) -> nn.Module:
    """`module` with the submodules `replace_leaf` returns a replacement for replaced.

    Modules on the way are shallow copies with their own child dicts; everything not
    replaced (and every weight) is shared with `module`, which is left unchanged.
    """
    new_leaf = replace_leaf(module)
    if new_leaf is not None:
        return new_leaf  # type: ignore[no-any-return]
    children = {name: (_swap(child, replace_leaf) if child is not None else None)
                for name, child in module._modules.items()}
    if all(children[name] is child for name, child in module._modules.items()):
        return module
    new = copy.copy(module)
    new._modules = children  # type: ignore[assignment]
    return new


def rewrite_convs(model: nn.Module, cache: dict[int, tuple[nn.Module, nn.Module]] | None = None) -> nn.Module:
    """`model` with its transposed and 1x1 convolutions in their faster forms (see above).

    `cache` (id of an original layer -> the layer and its replacement) lets several
    variants of one model (pruned for different sources) share the replacements; it
    holds the originals too, so that an id is never reused for another layer.
    """
    cache = {} if cache is None else cache

    def replace_leaf(module: nn.Module) -> nn.Module | None:
        found = cache.get(id(module))
        if found is not None and found[0] is module:
            return found[1]
        new: nn.Module | None = None
        if SubpixelConvTranspose.supports(module):
            new = SubpixelConvTranspose(module)  # type: ignore[arg-type]
        elif PointwiseConv.supports(module):
            new = PointwiseConv(module)  # type: ignore[arg-type]
        if new is not None:
            cache[id(module)] = (module, new)
        return new

    return _swap(model, replace_leaf)


def compiled(model: nn.Module, accel: Acceleration) -> nn.Module:
    """`model` wrapped in torch.compile when `accel.compile` asks for it."""
    if accel.compile == "off":
        return model
    log.info("compiling %s with torch.compile(mode=%r); the first pass of each shape compiles",
             type(model).__name__, accel.compile)
    return torch.compile(model, mode=accel.compile, dynamic=False)  # type: ignore[return-value]
