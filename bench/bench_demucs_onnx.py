"""Would ONNX Runtime run HTDemucs faster than torch on this CPU? Its three parts, exported and timed side by side.

    .venv/bin/python -m pip install onnx           # the exporter needs it; not a project dependency
    .venv/bin/python bench/bench_demucs_onnx.py    # full-size htdemucs_6s, 1 thread each side
    .venv/bin/python bench/bench_demucs_onnx.py --threads 2 --reps 5

HTDemucs's STFT, complex masking and iSTFT do not export to ONNX, so the network between
them is cut into its three parts, each exported with torch.onnx (TorchScript exporter,
opset 17) at the segment's fixed shapes: the encoders (frequency and time branches, with
their skip outputs), the cross-transformer with its channel up/down-samplers, and the
decoders. Each part then runs in torch (flash attention, as the separator now does) and
in an onnxruntime CPU session with every graph optimisation on, alternately, `--reps`
times; the best times, their ratio and the SDR of onnxruntime's output against torch's
are printed. The result decides whether the separator should ship an ONNX path (see
docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402


class Encoders(nn.Module):
    """(normalised magnitude, normalised mix) -> (x, xt, *frequency skips, *time skips)."""

    def __init__(self, m: Any) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.m
        saved, saved_t = [], []
        for idx, encode in enumerate(m.encoder):
            inject = None
            if idx < len(m.tencoder):
                tenc = m.tencoder[idx]
                xt = tenc(xt)
                if not tenc.empty:
                    saved_t.append(xt)
                else:
                    inject = xt
            x = encode(x, inject)
            if idx == 0 and m.freq_emb is not None:
                frs = torch.arange(x.shape[-2], device=x.device)
                emb = m.freq_emb(frs).t()[None, :, :, None].expand_as(x)
                x = x + m.freq_emb_scale * emb
            saved.append(x)
        return (x, xt, *saved, *saved_t)


class Transformer(nn.Module):
    """The cross-transformer between the branches, with the bottleneck's channel resampling."""

    def __init__(self, m: Any) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.m
        if not m.bottom_channels:
            return m.crosstransformer(x, xt)  # type: ignore[no-any-return]
        b, c, f, t = x.shape
        x = m.channel_upsampler(x.reshape(b, c, f * t)).reshape(b, -1, f, t)
        xt = m.channel_upsampler_t(xt)
        x, xt = m.crosstransformer(x, xt)
        x = m.channel_downsampler(x.reshape(b, -1, f * t)).reshape(b, -1, f, t)
        return x, m.channel_downsampler_t(xt)


class Decoders(nn.Module):
    """(x, xt, *skips) -> the frequency and time branches' outputs."""

    def __init__(self, m: Any, lengths: list[int], lengths_t: list[int]) -> None:
        super().__init__()
        self.m, self.lengths, self.lengths_t = m, lengths, lengths_t

    def forward(self, x: torch.Tensor, xt: torch.Tensor, *skips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.m
        n = len(m.encoder)
        saved, saved_t = list(skips[:n]), list(skips[n:])
        lengths, lengths_t = list(self.lengths), list(self.lengths_t)
        for idx, decode in enumerate(m.decoder):
            x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
            offset = m.depth - len(m.tdecoder)
            if idx >= offset:
                tdec = m.tdecoder[idx - offset]
                length_t = lengths_t.pop(-1)
                if tdec.empty:
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, saved_t.pop(-1), length_t)
        return x, xt


def sdr(ref: torch.Tensor, est: torch.Tensor) -> float:
    err = float(((ref.double() - est.double()) ** 2).sum())
    return float("inf") if err == 0 else float(10 * torch.log10((ref.double() ** 2).sum() / err))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_demucs_onnx.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, torch and onnxruntime alike")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny test model (a quick check of the script)")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, tiny_models

    torch.set_num_threads(args.threads)
    torch.backends.mha.set_fastpath_enabled(False)
    if args.tiny:
        models = tiny_models("htdemucs_6s", segment=2.0)[0]
    else:
        models = tiny_models("htdemucs_6s", segment=float(FULL_SEGMENT), kwargs=FULL_KWARGS)[0]
    m = models[0].eval()
    mix = 0.1 * torch.randn(1, 2, int(m.samplerate * m.segment), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mag = m._magnitude(m._spec(mix))
        x = (mag - mag.mean(dim=(1, 2, 3), keepdim=True)) / (1e-5 + mag.std(dim=(1, 2, 3), keepdim=True))
        xt = (mix - mix.mean(dim=(1, 2), keepdim=True)) / (1e-5 + mix.std(dim=(1, 2), keepdim=True))
        lengths, lengths_t, fx, ft = [], [], x, xt
        for idx, encode in enumerate(m.encoder):
            lengths.append(fx.shape[-1])
            inject = None
            if idx < len(m.tencoder):
                lengths_t.append(ft.shape[-1])
                ft = m.tencoder[idx](ft)
                inject = ft if m.tencoder[idx].empty else None
            fx = encode(fx, inject)
        enc = Encoders(m).eval()
        outs = enc(x, xt)
        tr = Transformer(m).eval()
        tx, txt = tr(outs[0], outs[1])
    parts = {"encoders": (enc, (x, xt)), "cross-transformer": (tr, (outs[0], outs[1])),
             "decoders": (Decoders(m, lengths, lengths_t).eval(), (tx, txt, *outs[2:]))}
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    print(f"threads {args.threads}, {'tiny' if args.tiny else 'full-size'} htdemucs_6s, best of {args.reps}")
    total_torch = total_ort = 0.0
    for name, (module, inputs) in parts.items():
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings about shape asserts
            torch.onnx.export(module, inputs, buf, dynamo=False, opset_version=17,
                              input_names=[f"i{i}" for i in range(len(inputs))])
        session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
        feed = {f"i{i}": t.numpy() for i, t in enumerate(inputs)}
        best_torch = best_ort = float("inf")
        with torch.no_grad():
            ref = module(*inputs)
            got = session.run(None, feed)
            for _ in range(args.reps):
                started = time.perf_counter()
                module(*inputs)
                best_torch = min(best_torch, time.perf_counter() - started)
                started = time.perf_counter()
                session.run(None, feed)
                best_ort = min(best_ort, time.perf_counter() - started)
        quality = min(sdr(r, torch.from_numpy(g)) for r, g in zip(ref, got, strict=False))
        total_torch += best_torch
        total_ort += best_ort
        print(f"  {name:18s} torch {best_torch:6.3f} s  onnxruntime {best_ort:6.3f} s  "
              f"torch/onnxruntime {best_torch / best_ort:4.2f}x  SDR {quality:.1f} dB", flush=True)
    print(f"  {'all three':18s} torch {total_torch:6.3f} s  onnxruntime {total_ort:6.3f} s  "
          f"torch/onnxruntime {total_torch / total_ort:4.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
