"""The separator's forward-pass settings, apart from `separator_svc.accel` (which applies
them with torch) so that reading the configuration never imports torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

PRECISIONS = ("fp32", "tf32", "bf16", "bf16-transformer", "fp16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
ATTENTION = ("sdpa", "native")
REWRITE = ("auto", "on", "off")


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
        precision: fp32 (exact), tf32 (CUDA), bf16, bf16-transformer, fp16 (lossy, opt-in).
        compile: torch.compile mode, or "off".
        rewrite: "auto" (on a CPU), "on" or "off": the sub-pixel and batched-matmul
            forms of the transposed and 1x1 convolutions.
    """

    workers: int = 0
    threads: int = 0
    attention: str = "sdpa"
    prune: bool = True
    precision: str = "fp32"
    compile: str = "off"
    rewrite: str = "auto"

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
        if self.rewrite not in REWRITE:
            raise ValueError(f"rewrite {self.rewrite!r} is not one of {', '.join(REWRITE)}")

    def resolved(self, device: str) -> Acceleration:
        """The same settings with the automatic values filled in for `device`."""
        self.check()
        cuda = device.split(":", 1)[0] == "cuda"
        cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
        workers = self.workers or (2 if cuda else min(cores, 4))
        if self.compile == "reduce-overhead":
            workers = 1  # CUDA graph trees keep per-thread state: one calling thread
        threads = self.threads or max(1, cores // workers)
        rewrite = self.rewrite if self.rewrite != "auto" else ("off" if cuda else "on")
        return replace(self, workers=workers, threads=threads, rewrite=rewrite)

    @property
    def lossy(self) -> bool:
        """Whether the stems may differ from fp32 by more than float rounding."""
        return self.precision in ("bf16", "bf16-transformer", "fp16")

    def describe(self) -> str:
        """One line for logs and ModelInfo."""
        parts = [f"{self.workers} worker(s) x {self.threads} thread(s)", f"attention {self.attention}",
                 "pruned sources" if self.prune else "all sources", self.precision]
        if self.rewrite == "on":
            parts.append("sub-pixel convolutions")
        if self.compile != "off":
            parts.append(f"torch.compile {self.compile}")
        return ", ".join(parts)


TODAY = Acceleration(workers=1, threads=0, attention="native", prune=False, rewrite="off")
"""The settings before this module existed (one pass at a time on every core), for benchmarks."""
