"""Demucs on the CPU: separation speed of today's settings against each faster one, and how close the stems stay.

    .venv/bin/python bench/bench_demucs_cpu.py                     # quick: htdemucs_6s, 15 s clip
    .venv/bin/python bench/bench_demucs_cpu.py --long              # every bag and change, 30 s, int8 too
    .venv/bin/python bench/bench_demucs_cpu.py --bags htdemucs_ft --seconds 20 --rounds 3
    .venv/bin/python bench/bench_demucs_cpu.py --song             # a song's length (120 s): today,
                                                                  # new default, bf16 transformer

Each bag is a full-size random-weight HTDemucs (the released htdemucs's architecture
and 7.8 s segment, `separator_svc.tiny.FULL_KWARGS`; htdemucs_ft: four of them, each
weighted for one source; htdemucs_6s: six sources), built in memory with a fixed seed.
A synthesised song (`bench/common.song`) is streamed through `DemucsModel.open_stream`
in 1 s blocks, asking for the stems the gateway asks for (guitar and bass; "guitar" is
"other" in the 4-source bags), once per configuration per round after one warm-up
segment each, configurations alternating (each round starting with the next one) so that
other load on the machine hits them alike:

* today: one segment at a time on every core, torch's native MHA fast path for the
  self-attention layers, every source computed (the settings before separator_svc.accel);
* each lossless change alone on top of today (`--each`, `--long`), then all of them
  (the new default);
* lossy, opt-in: bf16 autocast of the whole model, and of the cross-transformer only
  (AMX on CPUs that have it); `--int8` adds torch's
  dynamic int8 quantisation of the Linear layers (not a service setting: see the result).

Reported per configuration: best and median wall seconds, CPU seconds, speed-up of the
best wall time against today's, and the SDR of its stems against today's (dB, the
smallest over the stems). Lossy ones also get an SDR on one segment of a "hard" copy of
the model whose LayerScale factors are 1 instead of the random initialisation's 1e-4, so
that the transformer's contribution is as large as in a trained model.

A 15 s clip is three segments, the last one alone on the machine, so the quick run
understates what segments in flight give a whole song; `--song` measures that, in a
section of its own.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import command, machine, machine_line, read_wav, song, table, write_section  # noqa: E402

from separator_svc.accel import (  # noqa: E402
    TODAY,
    Acceleration,
    apply_process_settings,
    autocast,
    transformer_in_bf16,
)

STEMS = ("guitar", "bass")


@dataclass
class Config:
    """One way of running the forward passes."""

    name: str
    accel: Acceleration
    lossy: bool = False
    int8: bool = False
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    stems: dict[str, np.ndarray] = field(default_factory=dict)


def configs(cores: int, int8: bool, each: bool = True) -> list[Config]:
    """Today's settings, each lossless change alone (`each`), all of them, and the lossy ones."""
    today = replace(TODAY, threads=cores)
    new = Acceleration().resolved("cpu")
    out = [
        Config(f"today (1 pass x {cores} threads, native MHA, all sources)", today),
        Config("+ flash attention (sdpa)", replace(today, attention="sdpa")),
        Config("+ only the requested sources", replace(today, prune=True)),
        Config("+ sub-pixel / batched-matmul convolutions", replace(today, rewrite="on")),
        Config(f"+ {new.workers} segments in flight x {new.threads} thread(s)",
               replace(today, workers=new.workers, threads=new.threads)),
        Config("all lossless (new default)", new),
        Config("new default + bf16 autocast (opt-in)", replace(new, precision="bf16"), lossy=True),
        Config("new default + bf16 cross-transformer (opt-in)", replace(new, precision="bf16-transformer"),
               lossy=True),
    ]
    if int8:
        out.append(Config("new default + int8 dynamic Linear (bench only)", new, lossy=True, int8=True))
    if not each:
        out = [c for c in out if not c.name.startswith("+ ")]
    return out


def build_bag(name: str, seed: int = 0) -> Any:
    """A full-size random-weight bag as demucs loads it (BagOfModels of HTDemucs)."""
    from demucs.apply import BagOfModels

    from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, tiny_models

    models, sigs, weights = tiny_models(name, segment=float(FULL_SEGMENT), seed=seed, kwargs=FULL_KWARGS)
    for model, sig in zip(models, sigs, strict=True):
        model._sig = sig
    return BagOfModels(models, weights)


def quantised(bag: Any) -> Any:
    """The bag with torch's dynamic int8 quantisation of every nn.Linear."""
    import warnings

    from demucs.apply import BagOfModels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {torch.nn.Linear}, dtype=torch.qint8)
                  for m in bag.models]
    for q, m in zip(models, bag.models, strict=True):
        q._sig = getattr(m, "_sig", "")
    return BagOfModels(models, bag.weights)


def stream_once(model: Any, clip: np.ndarray) -> tuple[float, float, dict[str, np.ndarray]]:
    """Stream the clip in 1 s blocks; (wall s, CPU s, stems)."""
    stream = model.open_stream(list(STEMS))
    pieces = []
    cpu = time.process_time()
    started = time.perf_counter()
    for lo in range(0, clip.shape[0], 44_100):
        pieces.append(stream.push(clip[lo : lo + 44_100]))
    pieces.append(stream.finish())
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return wall, cpu, {s: np.concatenate([p[s] for p in pieces]) for s in STEMS}


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Signal-to-distortion ratio of `est` against `ref` in dB (inf when identical)."""
    ref64, err = ref.astype(np.float64), ref.astype(np.float64) - est.astype(np.float64)
    noise = float(np.sum(err**2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref64**2) / noise))


def hard_sdr(bag: Any, config: Config) -> float:
    """SDR of a lossy configuration on one segment of a copy whose LayerScales are 1."""
    hard = copy.deepcopy(bag.models[0])
    for name, p in hard.named_parameters():
        if name.endswith(".scale"):
            p.data.fill_(1.0)
    lossy = quantised(type(bag)([hard])).models[0] if config.int8 else hard
    if config.accel.precision == "bf16-transformer":
        lossy = transformer_in_bf16(hard, "cpu")
    length = int(hard.samplerate * hard.segment)
    x = torch.from_numpy(read_wav(song(30.0))[:length].T.copy())[None]
    with torch.no_grad():
        ref = hard(x)
        with autocast(config.accel, "cpu"):
            out = lossy(x).float()
    return sdr(ref.numpy(), out.numpy())


def forward_cpu(bag: Any, clip: np.ndarray, reps: int = 3) -> dict[str, float]:
    """CPU seconds of one forward pass on one thread: today's model vs. the new default's
    variant for the gateway's stems (the least load-sensitive measure of the work)."""
    from separator_svc.accel import prune_sources, rewrite_convs

    model = bag.models[0]
    keep = [model.sources.index(s if s in model.sources else "other") for s in STEMS]
    new = rewrite_convs(prune_sources(model, keep))
    x = torch.from_numpy(clip[: int(model.samplerate * model.segment)].T.copy())[None]
    best = {"today": float("inf"), "new": float("inf")}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(reps):
                for key, module, native in (("today", model, True), ("new", new, False)):
                    torch.backends.mha.set_fastpath_enabled(native)
                    started = time.process_time()
                    module(x)
                    best[key] = min(best[key], time.process_time() - started)
    finally:
        torch.set_num_threads(before)
    return best


# The configurations of a song-length run (--song): the lossless set and the lossy one
# worth trying first, against today.
SONG_CONFIGS = ("today", "all lossless", "new default + bf16 cross-transformer")


def run_bag(name: str, clip: np.ndarray, rounds: int, int8: bool, each: bool,
            only: Sequence[str] | None = None) -> tuple[list[Config], dict[str, Any]]:
    """Every configuration on one bag (or those whose names start with one of `only`),
    `rounds` times, alternating."""
    from separator_svc.model import DemucsModel

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    bag = build_bag(name)
    qbag = quantised(bag) if int8 else None
    plan = configs(cores, int8, each)
    if only is not None:
        plan = [c for c in plan if c.name.startswith(tuple(only))]
    models = {c.name: DemucsModel(qbag if c.int8 else bag, name, "memory", "cpu", accel=c.accel) for c in plan}
    try:
        # First passes run slower (allocator, oneDNN kernels, each configuration's pruned
        # and rewritten layers): every configuration streams one segment before timing.
        for c in plan:
            model = models[c.name]
            apply_process_settings(model.accel, "cpu")
            stream_once(model, clip[: model.segment_length])
        for r in range(rounds):
            # Each round starts with another configuration, so none is always first.
            for c in plan[r % len(plan):] + plan[: r % len(plan)]:
                model = models[c.name]
                apply_process_settings(model.accel, "cpu")  # process-wide: set before each run
                wall, cpu, stems = stream_once(model, clip)
                c.walls.append(wall)
                c.cpus.append(cpu)
                if r == 0:
                    c.stems = stems
                print(f"  {name} round {r + 1}: {c.name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    finally:
        for model in models.values():
            model.close()
    extra: dict[str, Any] = {c.name: hard_sdr(bag, c) for c in plan if c.lossy}
    extra["forward_cpu"] = forward_cpu(bag, clip)
    return plan, extra


def report(results: dict[str, tuple[list[Config], dict[str, Any]]], seconds: float, rounds: int,
           info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The markdown section and the JSON summary."""
    rows: list[list[Any]] = []
    summary: dict[str, Any] = {"machine": info, "seconds": seconds, "rounds": rounds, "bags": {}}
    forward_lines = []
    for bag, (plan, hard) in results.items():
        one = hard.get("forward_cpu")
        if one:
            forward_lines.append(f"- {bag}: one forward pass (7.8 s segment) on one thread, best of 3: today "
                                 f"{one['today']:.2f} CPU s, new default {one['new']:.2f} CPU s "
                                 f"(**{one['today'] / one['new']:.2f}x** less work).")
        today = plan[0]
        base = min(today.walls)
        base_cpu = statistics.median(today.cpus)
        bag_rows = {}
        for c in plan:
            speed = base / min(c.walls)
            cpu_speed = base_cpu / statistics.median(c.cpus)
            worst = min(sdr(today.stems[s], c.stems[s]) for s in STEMS)
            sdr_text = "identical" if worst == float("inf") else f"{worst:.1f}"
            if c.name in hard and c.lossy:
                sdr_text += f" (hard copy: {hard[c.name]:.1f})"
            rows.append([bag, c.name, f"{min(c.walls):.1f}", f"{statistics.median(c.walls):.1f}",
                         f"{statistics.median(c.cpus):.1f}", f"{seconds / min(c.walls):.2f}x",
                         f"**{speed:.2f}x**", f"{cpu_speed:.2f}x", sdr_text])
            bag_rows[c.name] = {"wall": c.walls, "cpu": c.cpus, "speedup": speed, "cpu_speedup": cpu_speed,
                                "sdr_vs_today": worst,
                                "hard_sdr": hard.get(c.name) if c.lossy else None, "accel": c.accel.describe()}
        summary["bags"][bag] = {"configs": bag_rows, "forward_cpu_one_thread": one}
    head = ["bag", "configuration", "best wall s", "median wall s", "median CPU s", "x real time",
            "speed-up vs today (best wall)", "CPU s: today / this", "SDR vs today, dB"]
    text = "\n".join([
        f"### 6. Demucs on the CPU: today's settings vs. faster ones ({seconds:g} s clip)",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; torch {torch.__version__}, {rounds} alternating round(s) per "
        f"configuration; stems asked: {', '.join(STEMS)} (what the gateway asks).",
        "",
        table(head, rows),
        "",
        *forward_lines,
        "",
        "The speed-up compares the best wall times of the alternating rounds; on a machine shared "
        "with other jobs the wall times mostly measure how much of the cores the run got, and the "
        "CPU seconds (this process, all its threads) what the work cost. "
        "Lossless changes keep the SDR against today's stems far above 40 dB (float rounding "
        "only). Lossy ones are opt-in (`SEPARATOR_PRECISION=bf16`); their \"hard copy\" SDR is "
        "measured on one segment of the model with its LayerScale factors raised from the random "
        "initialisation's 1e-4 to 1, where the transformer weighs as much as in a trained model.",
    ])
    return text, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_demucs_cpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="every bag shape, 30 s clip, 3 rounds, int8 too")
    parser.add_argument("--bags", default="", help="comma-separated: htdemucs, htdemucs_6s, htdemucs_ft")
    parser.add_argument("--seconds", type=float, default=0.0, help="clip length (default 15, 30 with --long)")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 2, 3 with --long)")
    parser.add_argument("--int8", action="store_true", help="also torch's dynamic int8 Linear quantisation")
    parser.add_argument("--each", action="store_true", help="also each lossless change alone (on with --long)")
    parser.add_argument("--song", action="store_true",
                        help="a song's length (120 s unless --seconds): today, the new default and the "
                             "bf16 cross-transformer only, in a section of its own")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/PERFORMANCE.md")
    args = parser.parse_args(argv)
    bags = [b for b in args.bags.split(",") if b] or (
        ["htdemucs", "htdemucs_6s", "htdemucs_ft"] if args.long else ["htdemucs_6s"])
    seconds = args.seconds or (120.0 if args.song else 30.0 if args.long else 15.0)
    rounds = args.rounds or (3 if args.long else 2)
    info = machine()
    print(f"Demucs CPU benchmark: {machine_line(info)}", flush=True)
    clip = read_wav(song(max(30.0, seconds)))[: int(seconds * 44_100)]
    results = {}
    for bag in bags:
        results[bag] = run_bag(bag, clip, rounds, args.int8 or args.long, args.each or args.long,
                               only=SONG_CONFIGS if args.song else None)
    text, summary = report(results, seconds, rounds, info)
    if args.song:
        text = text.replace("### 6. Demucs on the CPU:", "### 6. Demucs on the CPU, a song's length:", 1)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    if not args.no_write:
        write_section("demucs-cpu-song" if args.song else "demucs-cpu", text, long=args.long and not args.song)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
