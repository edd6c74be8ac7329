"""Separator on an accelerator: a full-size random-weight HTDemucs, warm streaming vs. per-request.

    .venv/bin/python bench/bench_gpu_separator.py --out gpu.json            # cuda when visible
    SEPARATOR_DEVICE=cpu .venv/bin/python bench/bench_gpu_separator.py --tiny --seconds 8 --out cpu.json

Made for the lent GPU machine, where only torch is sure to be installed: it needs demucs
and, for the streaming parts, separator_svc's imports (see docs/PERFORMANCE.md for the
one command that carries them). Every phase writes its numbers into the JSON file as soon
as it has them, so a phase that fails or runs out of time leaves the earlier ones.

Phases (each printed as it ends):

1. per-request baseline: a fresh interpreter per separation (import torch + demucs, load
   the bag from its folder, move it to the device, `apply_model` on the whole clip), run
   twice as the older app did per song;
2. warm streaming: the same clip through `separator_svc`'s exact StreamingSeparator in
   1 s blocks, three times, with the first stem block's latency and the largest
   difference from `apply_model` on the whole clip;
3. forward passes at batch 1, 2, 4, 8 (ms per pass, segments per second);
4. four songs at once with the dynamic batcher (max_batch 4) vs. one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 44_100

# Run in a fresh interpreter: everything the older app paid on every request.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, torch
from demucs.apply import apply_model
from demucs.pretrained import get_model
t_import = time.perf_counter()
repo, name, device, clip = sys.argv[1:5]
bag = get_model(name, repo=__import__("pathlib").Path(repo))
t_load = time.perf_counter()
bag.to(device)
mix = torch.from_numpy(np.load(clip))
if device.startswith("cuda"):
    torch.cuda.synchronize()
t_move = time.perf_counter()
with torch.no_grad():
    out = apply_model(bag, mix[None], shifts=0, split=True, overlap=0.25, device=device, progress=False)
out = out.cpu()
t_sep = time.perf_counter()
print(json.dumps({"import": t_import - t0, "load": t_load - t_import, "to_device": t_move - t_load,
                  "separate": t_sep - t_move}))
"""


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clip(seconds: float) -> np.ndarray:
    """(2, frames) float32: a synthesised song when tabagent's synth imports, else noise."""
    try:
        from evalkit.examples import make_song

        mix = make_song(seconds).mix
        return np.ascontiguousarray(mix.T, dtype=np.float32)
    except Exception:  # the GPU machine may lack the synth's imports; compute is the same
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal((2, int(seconds * RATE)))).astype(np.float32)


def phase_cold(results: dict[str, Any], repo: Path, device: str, clip_path: Path, runs: int) -> None:
    """Per-request baseline: a fresh process per separation, `runs` times."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    rows = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(repo), "htdemucs", device, str(clip_path)],
                              capture_output=True, text=True, env=env, timeout=600)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"cold child failed: {proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["wall"] = wall
        rows.append(row)
    results["cold"] = {"runs": rows, "per_song_seconds": sum(r["wall"] for r in rows)}


def _stream(model: Any, clip: np.ndarray, block_seconds: float = 1.0) -> tuple[float, float, np.ndarray]:
    """Stream `clip` through a fresh stem stream; returns (wall, first-output latency, guitar stem)."""
    stream = model.open_stream(["drums", "bass", "other", "vocals"])
    block = int(block_seconds * RATE)
    outs: list[np.ndarray] = []
    first = float("nan")
    started = time.perf_counter()
    for lo in range(0, clip.shape[1], block):
        out = stream.push(clip[:, lo : lo + block].T)
        if out["other"].shape[0] and not outs:
            first = time.perf_counter() - started
        if out["other"].shape[0]:
            outs.append(out["other"])
    outs.append(stream.finish()["other"])
    return time.perf_counter() - started, first, np.concatenate(outs)


def phase_warm(results: dict[str, Any], repo: Path, device: str, clip: np.ndarray) -> Any:
    """Load once, warm, then stream the clip three times; check exactness vs apply_model."""
    import torch
    from demucs.apply import apply_model

    from separator_svc.model import load_model

    started = time.perf_counter()
    model = load_model("htdemucs", repo, device)
    loaded = time.perf_counter() - started
    model.warm_up()
    _sync(device)
    warmed = time.perf_counter() - started
    runs = [_stream(model, clip) for _ in range(3)]
    seconds = clip.shape[1] / RATE
    with torch.no_grad():
        whole = apply_model(model.bag, torch.from_numpy(clip)[None], shifts=0, split=True, overlap=0.25,
                            device=device, progress=False)[0]
    other = model.sources.index("other")
    ref = whole[other].cpu().numpy().T
    got = runs[-1][2]
    results["warm"] = {
        "load_seconds": loaded, "load_and_warm_seconds": warmed,
        "stream_seconds": [r[0] for r in runs], "first_block_seconds": [r[1] for r in runs],
        "rtf": min(r[0] for r in runs) / seconds,
        "max_abs_diff_vs_apply_model": float(np.max(np.abs(got - ref))) if got.shape == ref.shape else None,
        "segment_seconds": model.segment_seconds,
        "params_millions": sum(p.numel() for p in model.bag.models[0].parameters()) / 1e6,
    }
    return model


def phase_batches(results: dict[str, Any], model: Any, device: str, sizes: list[int], reps: int) -> None:
    """Forward passes of 1, 2, 4, 8 segments."""
    import torch

    runner = model.runners[0]
    rows = {}
    for b in sizes:
        batch = 0.1 * torch.randn(b, 2, model.segment_length)
        runner.run_batch(batch)  # warm this shape (cuDNN picks its kernels)
        _sync(device)
        started = time.perf_counter()
        for _ in range(reps):
            runner.run_batch(batch)
        ms = (time.perf_counter() - started) / reps * 1000
        rows[str(b)] = {"ms_per_forward": ms, "segments_per_second": b / ms * 1000}
    results["batches"] = rows


def phase_concurrent(results: dict[str, Any], repo: Path, device: str, clip: np.ndarray, streams: int) -> None:
    """`streams` songs at once through a batching model vs. one after another (unbatched)."""
    from separator_svc.model import load_model

    single = load_model("htdemucs", repo, device)
    single.warm_up()
    started = time.perf_counter()
    for _ in range(streams):
        _stream(single, clip)
    sequential = time.perf_counter() - started
    single.close()
    batched = load_model("htdemucs", repo, device, max_batch=streams, max_wait=0.01)
    batched.warm_up()
    errors: list[BaseException] = []

    def one() -> None:
        try:
            _stream(batched, clip)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = time.perf_counter() - started
    runner = batched.runners[0]
    batched.close()
    results["concurrent"] = {
        "streams": streams, "sequential_seconds": sequential, "batched_seconds": together,
        "speedup": sequential / together, "mean_batch": runner.calls / max(1, runner.batches),
        "errors": [repr(e) for e in errors],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_separator.json"))
    parser.add_argument("--device", default=os.environ.get("SEPARATOR_DEVICE", "auto"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model-dir", type=Path, default=None, help="an htdemucs bag (default: build one)")
    parser.add_argument("--tiny", action="store_true", help="tiny model (a quick CPU check of the script)")
    parser.add_argument("--cold-runs", type=int, default=2)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()

    import torch

    device = args.device
    if device in ("", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "cpus": os.cpu_count(), "clip_seconds": args.seconds, "errors": {},
    }

    def save() -> None:
        if device.startswith("cuda"):
            results["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
        args.out.write_text(json.dumps(results, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        repo = args.model_dir
        if repo is None:
            from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, build_tiny_bag

            started = time.perf_counter()
            if args.tiny:
                repo = build_tiny_bag(Path(tmp) / "bag", "htdemucs")
            else:
                repo = build_tiny_bag(Path(tmp) / "bag", "htdemucs", segment=float(FULL_SEGMENT),
                                      kwargs=FULL_KWARGS)
            results["build_bag_seconds"] = time.perf_counter() - started
        clip = _clip(args.seconds)
        clip_path = Path(tmp) / "clip.npy"
        np.save(clip_path, clip)
        model = None
        phases = [
            ("cold", lambda: phase_cold(results, repo, device, clip_path, args.cold_runs)),
            ("warm", lambda: phase_warm(results, repo, device, clip)),
            ("batches", lambda: model is not None and phase_batches(
                results, model, device, [int(b) for b in args.batches.split(",")], args.reps)),
            ("concurrent", lambda: phase_concurrent(results, repo, device, clip, args.streams)),
        ]
        for name, run in phases:
            started = time.perf_counter()
            try:
                value = run()
                if name == "warm":
                    model = value
            except Exception as exc:  # keep the other phases' numbers
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
            save()
    if "cold" in results and "warm" in results:
        warm = min(results["warm"]["stream_seconds"])
        results["warm_vs_cold"] = results["cold"]["per_song_seconds"] / warm
        save()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
