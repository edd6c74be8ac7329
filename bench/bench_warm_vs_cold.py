"""Benchmark 1: the warm chain vs. the per-request baseline (a fresh process per song), same clip.

    .venv/bin/python bench/bench_warm_vs_cold.py                 # (a) shipped default (DSP)
    .venv/bin/python bench/bench_warm_vs_cold.py --full-demucs   # and (b) full-size HTDemucs

The baseline is `bench/baseline_app.py`: what the older app did for every song (a fresh
process loads Basic Pitch, librosa and the fingering engine, runs the separator twice as a
subprocess, transcribes both stems with whole-file Basic Pitch, fingers and writes a tab).
The warm chain is `launcher.embedded.LocalChain` (every service in one process on loopback
gRPC, models loaded once), started once; the same clip is then sent as repeat requests
through the SDK, end to end (file upload to the last artifact), without video.

Configurations: (a) as shipped, without Demucs weights, so the separator is the DSP
fallback in both; (b) `--full-demucs`: a random-weight HTDemucs bag with the released
htdemucs's architecture and segment (42 M parameters, 7.8 s), written in demucs's real
on-disk format and loaded by both sides through `--model-dir` (the baseline through
demucs's own command line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    SONGS,
    command,
    machine,
    machine_line,
    process_song,
    run,
    song,
    table,
    write_section,
)


def full_demucs_bag() -> Path:
    """A full-size random-weight htdemucs bag, built once and cached beside the songs."""
    from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, build_tiny_bag

    dest = SONGS.parent / "tabagent-bench-models" / "htdemucs-full"
    if not (dest / "htdemucs.yaml").exists():
        build_tiny_bag(dest, "htdemucs", segment=float(FULL_SEGMENT), kwargs=FULL_KWARGS)
    return dest


def baseline(path: Path, model_dir: Path | None) -> dict[str, object]:
    """One per-request run of the older app in a fresh process; its timings and wall time."""
    cmd = [sys.executable, str(ROOT / "bench" / "baseline_app.py"), str(path)]
    with tempfile.TemporaryDirectory(prefix="baseline-out-") as out:
        cmd.append(out)
        if model_dir is not None:
            cmd += ["--model-dir", str(model_dir)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed: {proc.stderr[-3000:]}")
    timings = json.loads(proc.stdout.strip().splitlines()[-1])
    timings["wall"] = wall
    return timings


async def warm(path: Path, model_dir: Path | None, requests: int) -> dict[str, object]:
    """Start the embedded chain once, then send `requests` songs one after another."""
    from launcher.embedded import LocalChain

    started = time.perf_counter()
    async with LocalChain(video=False, model_dir=str(model_dir) if model_dir else None) as chain:
        start_seconds = time.perf_counter() - started
        runs = []
        for _ in range(requests):
            result = await process_song(chain.gateway_addr, path)
            if result.error:
                raise SystemExit(f"warm chain failed: {result.error}")
            runs.append(result)
    return {"start": start_seconds, "totals": [r.total for r in runs],
            "notes": [sum(r.notes.values()) for r in runs]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--baseline-runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=4, help="warm requests (the first is reported apart)")
    parser.add_argument("--full-demucs", action="store_true", help="also (b) a full-size random HTDemucs")
    parser.add_argument("--model-dir", type=Path, default=None, help="(b) with this bag instead")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/PERFORMANCE.md")
    args = parser.parse_args()

    info = machine()
    path = song(args.seconds)
    configs: list[tuple[str, Path | None]] = [("(a) shipped default: DSP separator (no Demucs weights)", None)]
    if args.full_demucs or args.model_dir:
        configs.append(("(b) full-size random-weight HTDemucs bag via --model-dir",
                        args.model_dir or full_demucs_bag()))
    rows, lines = [], []
    for name, model_dir in configs:
        print(f"{name}: baseline x{args.baseline_runs} ...", file=sys.stderr)
        base = [baseline(path, model_dir) for _ in range(args.baseline_runs)]
        print(f"{name}: warm chain, {args.requests} requests ...", file=sys.stderr)
        hot = run(warm(path, model_dir, args.requests))
        base_wall = statistics.median(float(b["wall"]) for b in base)
        repeats = hot["totals"][1:] or hot["totals"]
        warm_wall = statistics.median(repeats)
        ratio = base_wall / warm_wall
        verdict = "meets" if ratio >= 5 else "does not meet"
        rows.append([name, f"{base_wall:.2f}", f"{hot['totals'][0]:.2f}", f"{warm_wall:.2f}",
                     f"{hot['start']:.1f}", f"**{ratio:.1f}x**", verdict])
        split = ", ".join(f"{k} {statistics.median(float(b[k]) for b in base):.2f} s"
                          for k in ("load", "separate", "transcribe", "tab"))
        lines.append(f"- {name}: baseline per song {base_wall:.2f} s (inside: {split}; the rest is "
                     f"interpreter start and imports); warm repeat requests "
                     f"{', '.join(f'{t:.2f}' for t in repeats)} s; notes {hot['notes'][-1]} "
                     f"(baseline {base[-1]['notes']}).")
        print(f"{name}: baseline {base_wall:.2f} s, warm {warm_wall:.2f} s -> {ratio:.1f}x")
    header = ["configuration", "baseline s/song", "warm 1st request s", "warm repeat s (median)",
              "chain start s (once)", "baseline / warm", "5x goal"]
    threads = os.environ.get("TRANSCRIBER_THREADS", "1 (as shipped)")
    text = "\n".join([
        f"### 1. Warm chain vs. per-request baseline ({args.seconds:g} s clip)",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; TRANSCRIBER_THREADS={threads}.",
        "",
        table(header, rows),
        "",
        *lines,
    ])
    print(text)
    if not args.no_doc:
        long = len(configs) > 1 or args.seconds != 30.0
        write_section("warm-vs-cold", text, long=long)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
