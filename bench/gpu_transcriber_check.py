"""Transcriber on a GPU: the same notes as on the CPU, and how much faster (for a lent GPU machine).

    .venv/bin/pip uninstall -y onnxruntime && .venv/bin/pip install "onnxruntime-gpu[cuda,cudnn]>=1.21"
    .venv/bin/python bench/gpu_transcriber_check.py --out gpu-transcriber.json
    .venv/bin/python bench/gpu_transcriber_check.py --quick          # one short song, batch 1/16 only

onnxruntime-gpu holds the CPU provider too, so one process compares both. Phases (each
printed as it ends, and written to --out as soon as it has numbers):

1. providers: the onnxruntime build, its providers, and the provider each session really
   runs on (a CUDA session that fell back to the CPU fails the check);
2. activations: the same windows through the CPU and the CUDA session: the largest
   difference of each output (note, onset, contour);
3. notes: synthesised guitar + bass songs through the whole chain twice (embedded, with
   TRANSCRIBER_DEVICE=cpu, then cuda): each part's notes from CUDA scored against the
   CPU's (onset F1, and how many are identical in pitch, string and fret) and both
   against the songs' true notes, with each run's wall time;
4. speed: forward passes at batch 1, 4, 16, 64: milliseconds per pass and windows per
   second on each device.

Exit status 1 when CUDA did not run or CUDA's notes score below 0.98 onset F1 against
the CPU's (float differences may move a note across a threshold, rarely).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOTES_F1_MIN = 0.98


def write(out: Path | None, results: dict[str, Any]) -> None:
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")


def providers_phase() -> dict[str, Any]:
    import onnxruntime as ort

    from transcriber_svc.model import BasicPitchModel

    cpu = BasicPitchModel(threads=0, device="cpu")
    gpu = BasicPitchModel(threads=0, device="cuda")  # raises when CUDA cannot run
    return {"onnxruntime": ort.__version__, "available": ort.get_available_providers(),
            "cpu_session": cpu.providers, "cuda_session": gpu.providers, "cuda_device": gpu.info.device}


def windows(n: int, seed: int = 0) -> np.ndarray:
    from transcriber_svc.basicpitch import AUDIO_N_SAMPLES

    rng = np.random.default_rng(seed)
    t = np.arange(AUDIO_N_SAMPLES) / 22_050
    out = np.empty((n, AUDIO_N_SAMPLES, 1), np.float32)
    for i in range(n):  # plucked-ish tones with noise: activations that are not all zero
        f = 55.0 * 2 ** (rng.integers(0, 48) / 12)
        out[i, :, 0] = 0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.5)) + 0.01 * rng.standard_normal(t.size)
    return out


def activations_phase() -> dict[str, Any]:
    from transcriber_svc.model import BasicPitchModel

    x = windows(8)
    cpu = BasicPitchModel(threads=0, device="cpu").forward(x)
    gpu = BasicPitchModel(threads=0, device="cuda").forward(x)
    return {name: float(np.max(np.abs(getattr(cpu, name) - getattr(gpu, name))))
            for name in ("note", "onset", "contour")}


def speed_phase(batches: list[int], repeats: int) -> dict[str, Any]:
    from transcriber_svc.model import BasicPitchModel

    out: dict[str, Any] = {}
    for device in ("cpu", "cuda"):
        model = BasicPitchModel(threads=0, device=device)
        rows = {}
        for b in batches:
            x = windows(b, seed=b)
            model.forward(x)  # warm: allocations, cuDNN algorithm search
            t0 = time.perf_counter()
            for _ in range(repeats):
                model.forward(x)
            ms = (time.perf_counter() - t0) / repeats * 1000
            rows[str(b)] = {"ms_per_pass": round(ms, 2), "windows_per_s": round(b / ms * 1000, 1)}
            print(f"  {device:4} batch {b:3}: {ms:8.2f} ms/pass  {b / ms * 1000:8.1f} windows/s", flush=True)
        out[device] = rows
    return out


async def chain_notes(device: str, songs: list[Path]) -> tuple[list[dict[str, list[Any]]], list[float]]:
    """Each song's notes per part through the embedded chain with TRANSCRIBER_DEVICE=device."""
    from launcher.embedded import LocalChain
    from tabagent.client import AsyncClient, Done, Notes, process_config

    os.environ["TRANSCRIBER_DEVICE"] = device
    parts: list[dict[str, list[Any]]] = []
    walls: list[float] = []
    chain = LocalChain(video=False)
    try:
        await chain.start()
        async with AsyncClient(chain.gateway_addr) as client:
            for song in songs:
                notes: dict[str, list[Any]] = {}
                t0 = time.perf_counter()
                async for event in client.process(song, process_config()):
                    if isinstance(event, Notes):
                        notes.setdefault(event.part, []).extend(event.notes)
                    elif isinstance(event, Done):
                        walls.append(time.perf_counter() - t0)
                parts.append(notes)
    finally:
        await chain.stop()
    return parts, walls


def notes_phase(n_songs: int, seconds: float, device: str = "cuda") -> dict[str, Any]:
    import tempfile

    from evalkit import synth
    from evalkit.examples import make_song
    from evalkit.scoring import onset_scores

    folder = Path(tempfile.mkdtemp(prefix="gpu-transcriber-"))
    made = [make_song(seconds, bpm=100 + 7 * i, seed=500 + i) for i in range(n_songs)]
    paths = []
    for i, song in enumerate(made):
        path = folder / f"song{i}.wav"
        synth.write_wav(str(path), song.mix, song.sample_rate)
        paths.append(path)
    async def both() -> tuple[tuple[list[dict[str, list[Any]]], list[float]], ...]:
        return await chain_notes("cpu", paths), await chain_notes(device, paths)

    (cpu, cpu_walls), (gpu, gpu_walls) = asyncio.run(both())
    per_part: dict[str, dict[str, float]] = {}
    for song, c, g in zip(made, cpu, gpu, strict=True):
        for part in sorted(set(c) | set(g)):
            ref, est = c.get(part, []), g.get(part, [])
            row = per_part.setdefault(part, {"cpu_notes": 0, "cuda_notes": 0, "identical": 0, "f1_vs_cpu": 0.0,
                                             "truth_f1_cpu": 0.0, "truth_f1_cuda": 0.0})
            row["cpu_notes"] += len(ref)
            row["cuda_notes"] += len(est)
            key = {(n.pitch, round(n.start, 3), n.string, n.fret) for n in ref}
            row["identical"] += sum((n.pitch, round(n.start, 3), n.string, n.fret) in key for n in est)
            row["f1_vs_cpu"] += onset_scores(ref, est).f1 / len(made)
            truth = song.parts.get(part, [])
            row["truth_f1_cpu"] += onset_scores(truth, ref).f1 / len(made)
            row["truth_f1_cuda"] += onset_scores(truth, est).f1 / len(made)
    audio = sum(s.seconds for s in made)
    return {"songs": n_songs, "seconds_each": seconds, "parts": per_part,
            "wall_cpu_s": round(sum(cpu_walls), 2), "wall_cuda_s": round(sum(gpu_walls), 2),
            "rtf_cpu": round(sum(cpu_walls) / audio, 4), "rtf_cuda": round(sum(gpu_walls) / audio, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers here (JSON)")
    parser.add_argument("--quick", action="store_true", help="one 10 s song; batches 1 and 16")
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cpu: a dry run of "
                                                          "the notes phase on a machine without a GPU)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    ok = True
    for name, run in (
        ("providers", providers_phase),
        ("activations_max_abs_diff", activations_phase),
        ("speed", lambda: speed_phase([1, 16] if args.quick else [1, 4, 16, 64], 5 if args.quick else 20)),
        ("notes", lambda: notes_phase(1 if args.quick else 3, 10.0 if args.quick else 30.0, args.device)),
    ):
        print(f"== {name}", flush=True)
        try:
            results[name] = run()
        except Exception as exc:  # a phase that fails leaves the earlier numbers
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            ok = False
        print(json.dumps(results[name], indent=1), flush=True)
        write(args.out, results)
    notes = results.get("notes", {})
    if isinstance(notes, dict) and "parts" in notes:
        worst = min(p["f1_vs_cpu"] for p in notes["parts"].values())
        if worst < NOTES_F1_MIN:
            print(f"CUDA's notes differ from the CPU's: onset F1 {worst:.3f} < {NOTES_F1_MIN}", flush=True)
            ok = False
    print("OK: the transcriber runs on CUDA with the CPU's notes" if ok else "FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
