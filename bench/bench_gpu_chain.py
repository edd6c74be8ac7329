"""The whole chain on one GPU: one song in x real time, 1/4/8/16 songs at once, GPU memory per song, faster variants.

Install, on a machine with network and a CUDA build of torch already there (no other
packages are installed while it runs):

    pip install "demucs==4.1.0" einops julius soxr pyyaml tqdm psutil grpcio protobuf \
        opentelemetry-api opentelemetry-sdk prometheus-client onnxruntime-gpu \
        && pip install --no-deps "basic-pitch==0.4.0" && pip install --no-deps -e .

On a lent machine without network the same packages travel as files (onnxruntime-gpu
does not fit in what a device run carries, so Basic Pitch then runs on the CPU, and the
JSON says so): see docs/PERFORMANCE.md, "GPU: the whole chain", for the commands.

    python bench/bench_gpu_chain.py --out $OUT/gpu_chain.json      # everything, about 6 min on an H100
    python bench/bench_gpu_chain.py --dry-run --out /tmp/dry.json    # CPU, tiny bag, a few seconds

Phases (each writes its numbers into the JSON file as soon as it has them, so a phase that
fails or runs out of time leaves the others; `--budget` seconds bound the whole run and
the compiled variants are skipped when too little is left):

1. chain: one song (`--song-seconds`, 240 by default: the issue's 4-minute song) through
   the whole chain without video, warm, twice: separation (htdemucs_6s, full-size random
   weights, the separator's default settings on a GPU) -> per part 22.05 kHz mono ->
   Basic Pitch windows -> notes, post-processing and fingering, plus the beat tracker on
   the mix. `--chain grpc` runs it through the real services on loopback gRPC
   (launcher.embedded.LocalChain and the SDK; needs every service's dependencies);
   `--chain inprocess` (what `auto` falls back to) drives the same stream objects in one
   process, the separator and each part in their own threads as the services overlap them.
2. concurrency: 1, 4, 8, 16 songs (`--concurrent-seconds` each) at once, the separator
   batching segments across songs (SEPARATOR_MAX_BATCH 16, bounded wait 10 ms, so a lone
   song is not held back); throughput vs one at a time; peak GPU memory per level (torch's
   allocator and nvidia-smi) and its growth per added song.
3. variants, on a 30 s clip asking for guitar and bass: strict fp32 (TF32 off: the
   reference), the default (torch's cuDNN TF32 for convolutions), the MHA fast path vs
   flash attention, TF32 matmuls, bf16, fp16, torch.compile and CUDA graphs
   (compile mode reduce-overhead): compile/warm seconds, separation x real time, forward
   ms at batch 1 and 8, the SDR of each stem against the reference, and whether
   Basic Pitch finds identical notes (pitch, start, end, string, fret) in them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

RATE = 44_100
PARTS = {"guitar": "guitar", "bass": "bass"}
LEVELS = (1, 4, 8, 16)


# -- arguments ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); --dry-run shrinks everything for a CPU check."""
    parser = argparse.ArgumentParser(prog="bench/bench_gpu_chain.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_chain.json"), help="where the JSON goes")
    parser.add_argument("--device", default=os.environ.get("SEPARATOR_DEVICE", "auto"))
    parser.add_argument("--chain", choices=("auto", "grpc", "inprocess"), default="auto")
    parser.add_argument("--song-seconds", type=float, default=240.0)
    parser.add_argument("--concurrent-seconds", type=float, default=60.0)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="clip of the variants phase")
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument("--phases", default="chain,concurrency,variants")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    parser.add_argument("--max-batch", type=int, default=16, help="separator batch across songs")
    parser.add_argument("--dry-run", action="store_true", help="tiny bag on the CPU, short songs: a script check")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device = "cpu"
        args.song_seconds = min(args.song_seconds, 5.0)
        args.concurrent_seconds = min(args.concurrent_seconds, 3.0)
        args.clip_seconds = min(args.clip_seconds, 4.0)
        if args.levels == ",".join(map(str, LEVELS)):
            args.levels = "1,2"
        if args.variants == "all":
            args.variants = "fp32-strict,default,bf16"
        args.max_batch = min(args.max_batch, 2)
    args.level_list = [int(x) for x in args.levels.split(",") if x]
    args.phase_list = [p for p in args.phases.split(",") if p]
    return args


VARIANTS: dict[str, dict[str, Any]] = {
    # name -> Acceleration changes over the GPU default, and whether cuDNN may use TF32
    "fp32-strict": {"accel": {}, "cudnn_tf32": False},
    "default": {"accel": {}, "cudnn_tf32": True},
    "mha-native": {"accel": {"attention": "native"}, "cudnn_tf32": True},
    "tf32": {"accel": {"precision": "tf32"}, "cudnn_tf32": True},
    "bf16": {"accel": {"precision": "bf16"}, "cudnn_tf32": True},
    "bf16-transformer": {"accel": {"precision": "bf16-transformer"}, "cudnn_tf32": True},
    "fp16": {"accel": {"precision": "fp16"}, "cudnn_tf32": True},
    "compile": {"accel": {"compile": "default"}, "cudnn_tf32": True},
    "cuda-graphs": {"accel": {"compile": "reduce-overhead"}, "cudnn_tf32": True},
}
SLOW_VARIANTS = ("compile", "cuda-graphs")


# -- models -----------------------------------------------------------------------------------------


def build_bag(dry_run: bool) -> Any:
    """htdemucs_6s with random weights: full size, or tiny for a dry run."""
    from demucs.apply import BagOfModels

    from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, tiny_models

    if dry_run:
        models, sigs, weights = tiny_models("htdemucs_6s", segment=2.0)
    else:
        models, sigs, weights = tiny_models("htdemucs_6s", segment=float(FULL_SEGMENT), kwargs=FULL_KWARGS)
    for model, sig in zip(models, sigs, strict=True):
        model._sig = sig
    return BagOfModels(models, weights)


def separator(bag: Any, device: str, max_batch: int = 1, **accel: Any) -> Any:
    """A DemucsModel over `bag` with the GPU defaults changed by `accel`."""
    from separator_svc.accel import Acceleration
    from separator_svc.model import DemucsModel

    return DemucsModel(bag, "htdemucs_6s", "random weights (benchmark)", device, max_batch=max_batch,
                       max_wait=0.01, accel=replace(Acceleration(), **accel))


def set_process_flags(model: Any, cudnn_tf32: bool) -> None:
    """Process-wide switches for `model` (attention kernel, TF32) before it runs."""
    import torch

    from separator_svc.accel import apply_process_settings

    apply_process_settings(model.accel, str(model.device))
    torch.backends.cuda.matmul.allow_tf32 = model.accel.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


def song_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """(frames, 2) float32: a synthesised guitar + bass + drums song."""
    from evalkit.examples import make_song

    return np.ascontiguousarray(make_song(seconds, bpm=100.0, drums=True, seed=seed).mix, dtype=np.float32)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- one song through the chain in one process --------------------------------------------------------


class InProcessChain:
    """The services' stream objects driven in one process: the separator in the calling
    thread, each part's transcription in its own thread, as the services overlap them."""

    def __init__(self, separator_model: Any, basic_pitch: Any) -> None:
        self.separator = separator_model
        self.basic_pitch = basic_pitch  # None: separation only (no transcriber here)
        self.config: Any = None
        if basic_pitch is not None:
            from transcriber_svc.config import TranscriberConfig

            self.config = TranscriberConfig.from_env()

    def stems(self) -> dict[str, str]:
        """The stem each part reads (the gateway's routing: guitar, else other; bass)."""
        sources = list(self.separator.sources)
        return {part: inst if inst in sources else "other" for part, inst in PARTS.items()}

    def process(self, mix: np.ndarray) -> tuple[dict[str, list[Any]], float, dict[str, float]]:
        """(notes per part, wall seconds, seconds spent per stage) for one song."""
        from tabagent.rhythm import BeatTracker

        started = time.perf_counter()
        stems = self.stems()
        spent = {"separate": 0.0, "transcribe": 0.0}
        lock = threading.Lock()
        notes: dict[str, list[Any]] = {p: [] for p in PARTS}
        queues: dict[str, queue.Queue[np.ndarray | None]] = {p: queue.Queue() for p in PARTS}
        errors: list[BaseException] = []

        def transcriber(part: str) -> None:
            try:
                if self.basic_pitch is None:  # separation only: the stems are dropped
                    while queues[part].get() is not None:
                        pass
                    return
                from tabagent.audio import StreamResampler
                from tabagent.v1 import transcriber_pb2
                from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
                from transcriber_svc.pipeline import NoteTracker
                from transcriber_svc.request import parse_config

                settings = parse_config(transcriber_pb2.TranscribeConfig(instrument=PARTS[part], part=part),
                                        self.config.max_buffer_seconds, self.config.early_seconds)
                tracker = NoteTracker(settings.tuning, PARTS[part], settings.decoder, settings.post,
                                      early=settings.early)
                resampler = StreamResampler(RATE, AUDIO_SAMPLE_RATE, 1)
                while True:
                    audio = queues[part].get()
                    t = time.perf_counter()
                    if audio is None:
                        tail = resampler.process(np.zeros((0, 1), np.float32), last=True)
                        windows = np.concatenate([tracker.push_audio(tail[:, 0]), tracker.finish_audio()])
                    else:
                        mono = audio.mean(axis=1, keepdims=True, dtype=np.float32)
                        windows = tracker.push_audio(resampler.process(mono)[:, 0])
                    if len(windows):
                        notes[part].extend(tracker.add_outputs(self.basic_pitch.forward_each(windows)).notes)
                    if audio is None:
                        notes[part].extend(tracker.flush().notes)
                    with lock:
                        spent["transcribe"] += time.perf_counter() - t
                    if audio is None:
                        return
            except BaseException as exc:  # reported by the caller
                errors.append(exc)

        workers = [threading.Thread(target=transcriber, args=(p,), daemon=True) for p in PARTS]
        for w in workers:
            w.start()
        stream = self.separator.open_stream(sorted(set(stems.values())))
        beats = BeatTracker(RATE)
        for lo in range(0, mix.shape[0], RATE):
            chunk = mix[lo : lo + RATE]
            beats.push(chunk.mean(axis=1))
            t = time.perf_counter()
            out = stream.push(chunk)
            spent["separate"] += time.perf_counter() - t
            for part, stem in stems.items():
                if out[stem].shape[0]:
                    queues[part].put(out[stem])
        t = time.perf_counter()
        out = stream.finish()
        spent["separate"] += time.perf_counter() - t
        for part, stem in stems.items():
            if out[stem].shape[0]:
                queues[part].put(out[stem])
            queues[part].put(None)
        beats.result()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
        return notes, time.perf_counter() - started, spent


def note_keys(notes: dict[str, list[Any]]) -> dict[str, list[tuple[Any, ...]]]:
    """What "identical notes" compares: pitch, start, end (to 0.1 ms), string, fret per part."""
    return {part: sorted((n.pitch, round(n.start, 4), round(n.end, 4), n.string, n.fret) for n in ns)
            for part, ns in notes.items()}


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB (inf when identical)."""
    err = float(np.sum((ref.astype(np.float64) - est.astype(np.float64)) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err))


# -- GPU memory -------------------------------------------------------------------------------------------


class GpuMemory:
    """Peak GPU memory: torch's allocator and, sampled every 50 ms, nvidia-smi's used memory
    (which also sees onnxruntime's CUDA allocations and the CUDA context)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.smi_peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def smi_used_gb() -> float:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.split()[0]) / 1024 if out.returncode == 0 else 0.0
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        import torch

        result: dict[str, float] = {}
        if not self.device.startswith("cuda"):
            yield result
            return
        torch.cuda.reset_peak_memory_stats()
        self.smi_peak = self.smi_used_gb()
        self._stop.clear()

        def poll() -> None:
            while not self._stop.wait(0.05):
                self.smi_peak = max(self.smi_peak, self.smi_used_gb())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        try:
            yield result
        finally:
            self._stop.set()
            self._thread.join()
            result["torch_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
            result["smi_peak_gb"] = self.smi_peak


# -- phases ------------------------------------------------------------------------------------------------


def basic_pitch_model(device: str) -> tuple[Any, str]:
    """Basic Pitch on the GPU when onnxruntime has CUDA, else on the CPU (and says which);
    None when the transcriber's dependencies are missing here (the chain then separates only)."""
    try:
        import onnxruntime as ort

        from transcriber_svc.basicpitch import note_creation
        from transcriber_svc.config import TranscriberConfig
        from transcriber_svc.holder import warm_up
        from transcriber_svc.model import BasicPitchModel

        note_creation()  # basic_pitch's decoding helpers (librosa, scipy, mir_eval, ...)
    except Exception as exc:
        return None, f"unavailable ({type(exc).__name__}: {exc}): separation only, no notes"

    cuda = device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers()
    # One onnxruntime thread per call on the CPU, as the transcriber service runs it: each
    # part (and each concurrent song) is its own caller.
    model = BasicPitchModel(threads=TranscriberConfig.from_env().threads, device="cuda" if cuda else "cpu")
    warm_up(model)
    where = "cuda (onnxruntime-gpu)" if cuda else (
        "cpu: onnxruntime has no CUDA provider here (install onnxruntime-gpu)" if device.startswith("cuda")
        else "cpu")
    return model, where


def grpc_available() -> bool:
    """Whether every service's dependencies import (the gRPC chain needs them all)."""
    try:
        import av  # noqa: F401
        import guitarpro  # noqa: F401
        import music21  # noqa: F401

        import launcher.embedded  # noqa: F401
    except Exception:
        return False
    return True


def phase_chain(results: dict[str, Any], args: argparse.Namespace, bag: Any, bp: Any) -> None:
    """One song through the whole chain, warm, twice."""
    mix = song_audio(args.song_seconds)
    mode = args.chain if args.chain != "auto" else ("grpc" if grpc_available() else "inprocess")
    runs = []
    notes_count: dict[str, int] = {}
    spent: dict[str, float] = {}
    if mode == "grpc":
        runs = _grpc_runs(args, bag, mix, [1, 1])
    else:
        model = separator(bag, args.device)
        set_process_flags(model, True)
        model.warm_up()
        chain = InProcessChain(model, bp)
        chain.process(mix[: 10 * RATE])  # every path once
        for _ in range(2):
            sync(args.device)
            notes, wall, spent = chain.process(mix)
            runs.append(wall)
            notes_count = {p: len(n) for p, n in notes.items()}
        model.close()
    best = min(runs)
    results["chain"] = {
        "mode": mode, "song_seconds": args.song_seconds, "walls": runs, "x_real_time": args.song_seconds / best,
        "goal_under_2s_for_240s": best < 2.0 if args.song_seconds == 240.0 else None,
        "notes": notes_count, "stage_seconds": spent,
    }


def _grpc_runs(args: argparse.Namespace, bag: Any, mix: np.ndarray, levels: list[int]) -> list[float]:
    """Songs through the real services (LocalChain + SDK): wall seconds per level."""
    import asyncio
    import wave

    from common import process_song

    from launcher.embedded import LocalChain
    from separator_svc.tiny import FULL_KWARGS, FULL_SEGMENT, build_tiny_bag

    async def main(model_dir: Path, path: Path) -> list[float]:
        async with LocalChain(video=False, separator_model="htdemucs_6s", model_dir=str(model_dir)) as chain:
            await process_song(chain.gateway_addr, path)  # warm every path once
            walls = []
            for k in levels:
                started = time.perf_counter()
                runs = await asyncio.gather(*(process_song(chain.gateway_addr, path, timeout=600) for _ in range(k)))
                walls.append(time.perf_counter() - started)
                errors = [r.error for r in runs if r.error]
                if errors:
                    raise RuntimeError(f"chain errors: {errors[:3]}")
            return walls

    with tempfile.TemporaryDirectory() as tmp:
        # The same random weights as `bag` (same seed), in demucs's on-disk format.
        if args.dry_run:
            model_dir = build_tiny_bag(Path(tmp) / "bag", "htdemucs_6s", segment=2.0)
        else:
            model_dir = build_tiny_bag(Path(tmp) / "bag", "htdemucs_6s", segment=float(FULL_SEGMENT),
                                       kwargs=FULL_KWARGS)
        path = Path(tmp) / "song.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes((np.clip(mix, -1, 1) * 32767).astype("<i2").tobytes())
        limit = str(max(levels) * 2)
        env = {"SEPARATOR_DEVICE": args.device, "SEPARATOR_MAX_BATCH": str(args.max_batch),
               "SEPARATOR_MAX_STREAMS": limit, "SEPARATOR_MAX_QUEUE": limit, "TRANSCRIBER_MAX_STREAMS": limit,
               "TRANSCRIBER_MAX_QUEUE": limit, "GATEWAY_MAX_STREAMS": limit, "GATEWAY_MAX_QUEUE": limit,
               "TRANSCRIBER_DEVICE": "auto"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return asyncio.run(main(model_dir, path))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def phase_concurrency(results: dict[str, Any], args: argparse.Namespace, bag: Any, bp: Any,
                      memory: GpuMemory) -> None:
    """1, 4, 8, 16 songs at once with the separator batching across them."""
    mix = song_audio(args.concurrent_seconds, seed=1)
    model = separator(bag, args.device, max_batch=args.max_batch)
    set_process_flags(model, True)
    model.warm_up()
    chain = InProcessChain(model, bp)
    chain.process(mix[: 5 * RATE])
    levels: dict[str, Any] = {}
    results["concurrency"] = {"song_seconds": args.concurrent_seconds, "max_batch": args.max_batch,
                              "mode": "inprocess", "levels": levels}
    runner = model.runners[0]
    try:
        for k in args.level_list:
            errors: list[str] = []
            calls, batches = runner.calls, runner.batches

            def one(errors: list[str] = errors) -> None:
                try:
                    chain.process(mix)
                except Exception as exc:  # counted below
                    errors.append(repr(exc))

            with memory.measure() as mem:
                threads = [threading.Thread(target=one) for _ in range(k)]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                sync(args.device)
                wall = time.perf_counter() - started
            levels[str(k)] = {"wall": wall, "throughput": k * args.concurrent_seconds / wall, "errors": errors,
                              "mean_batch": (runner.calls - calls) / max(1, runner.batches - batches), **mem}
            print(f"  {k} song(s) at once: {wall:.2f} s, {levels[str(k)]['throughput']:.1f} song s per s", flush=True)
    finally:
        model.close()
    one_level = levels.get("1")
    if one_level:
        for k, level in levels.items():
            level["vs_one_at_a_time"] = level["throughput"] / one_level["throughput"]
            if "torch_peak_gb" in level and int(k) > 1:
                level["torch_gb_per_added_song"] = (level["torch_peak_gb"] - one_level["torch_peak_gb"]) / (int(k) - 1)
                level["smi_gb_per_added_song"] = (level["smi_peak_gb"] - one_level["smi_peak_gb"]) / (int(k) - 1)


def phase_variants(results: dict[str, Any], args: argparse.Namespace, bag: Any, bp: Any,
                   deadline: float) -> None:
    """Each precision / kernel / compile variant against strict fp32."""
    import torch

    clip = song_audio(args.clip_seconds, seed=2)
    names = list(VARIANTS) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    out: dict[str, Any] = {}
    results["variants"] = out
    reference: dict[str, Any] = {}
    for name in names:
        spec = VARIANTS[name]
        if name in SLOW_VARIANTS and deadline - time.monotonic() < 150:
            out[name] = {"skipped": "too little of the time budget left to compile"}
            continue
        gpu_only = name in SLOW_VARIANTS or spec["accel"].get("precision") in ("fp16", "tf32")
        if gpu_only and not args.device.startswith("cuda"):
            out[name] = {"skipped": "GPU only"}
            continue
        row: dict[str, Any] = {}
        out[name] = row
        try:
            model = separator(bag, args.device, **spec["accel"])
            set_process_flags(model, spec["cudnn_tf32"])
            started = time.perf_counter()
            warm = model.open_stream(["guitar", "bass"])  # the pruned variant the chain uses
            warm.push(clip[: model.segment_length])
            warm.finish()
            sync(args.device)
            row["warm_seconds"] = time.perf_counter() - started  # includes compiling
            walls, stems = [], {}
            for _ in range(2):
                stream = model.open_stream(["guitar", "bass"])
                sync(args.device)
                started = time.perf_counter()
                pieces = [stream.push(clip[lo : lo + RATE]) for lo in range(0, clip.shape[0], RATE)]
                pieces.append(stream.finish())
                sync(args.device)
                walls.append(time.perf_counter() - started)
                stems = {s: np.concatenate([p[s] for p in pieces]) for s in ("guitar", "bass")}
            row["separate_x_real_time"] = args.clip_seconds / min(walls)
            runner = model.runners[0]
            for batch in (1, 8):
                x = 0.1 * torch.randn(batch, 2, model.segment_length)
                runner.run_batch(x, sources=(4, 1))
                sync(args.device)
                started = time.perf_counter()
                reps = 5
                for _ in range(reps):
                    runner.run_batch(x, sources=(4, 1))
                sync(args.device)
                row[f"forward_ms_batch{batch}"] = (time.perf_counter() - started) / reps * 1000
            chain = InProcessChain(model, bp)
            notes = note_keys(_transcribe_stems(chain, stems)) if bp is not None else None
            if not reference:
                reference.update(stems=stems, notes=notes, name=name)
            row["reference"] = reference["name"]
            row["sdr_db"] = {s: sdr(reference["stems"][s], stems[s]) for s in stems}
            if notes is None or reference["notes"] is None:
                row["identical_notes"] = "not checked: no transcriber here"
            else:
                row["identical_notes"] = notes == reference["notes"]
                row["notes"] = {p: len(n) for p, n in notes.items()}
                row["notes_differing"] = {p: len(set(notes[p]) ^ set(reference["notes"][p])) for p in notes}
            model.close()
        except Exception as exc:  # keep the other variants
            row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        print(f"  variant {name}: {json.dumps(row, default=str)[:300]}", flush=True)


def _transcribe_stems(chain: InProcessChain, stems: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """Basic Pitch's notes (post-processed and fingered) for each part's separated stem."""
    from tabagent.audio import StreamResampler
    from tabagent.v1 import transcriber_pb2
    from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
    from transcriber_svc.pipeline import NoteTracker
    from transcriber_svc.request import parse_config

    out: dict[str, list[Any]] = {}
    for part, stem in chain.stems().items():
        settings = parse_config(transcriber_pb2.TranscribeConfig(instrument=PARTS[part], part=part),
                                chain.config.max_buffer_seconds, chain.config.early_seconds)
        tracker = NoteTracker(settings.tuning, PARTS[part], settings.decoder, settings.post, early=settings.early)
        mono = stems[stem].mean(axis=1, keepdims=True, dtype=np.float32)
        audio = StreamResampler(RATE, AUDIO_SAMPLE_RATE, 1).process(mono, last=True)[:, 0]
        windows = np.concatenate([tracker.push_audio(audio), tracker.finish_audio()])
        notes = list(tracker.add_outputs(chain.basic_pitch.forward_each(windows)).notes) if len(windows) else []
        out[part] = notes + list(tracker.flush().notes)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    started = time.monotonic()
    deadline = started + args.budget
    if args.device in ("", "auto"):
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "cpus": os.cpu_count(), "dry_run": args.dry_run, "errors": {},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        results["elapsed_seconds"] = time.monotonic() - started
        args.out.write_text(json.dumps(results, indent=1, default=str))

    bag = build_bag(args.dry_run)
    results["params_millions"] = sum(p.numel() for p in bag.models[0].parameters()) / 1e6
    bp, where = basic_pitch_model(args.device)
    results["basic_pitch"] = where
    memory = GpuMemory(args.device)
    phases = {
        "chain": lambda: phase_chain(results, args, bag, bp),
        "concurrency": lambda: phase_concurrency(results, args, bag, bp, memory),
        "variants": lambda: phase_variants(results, args, bag, bp, deadline),
    }
    save()
    for name in args.phase_list:
        if time.monotonic() > deadline:
            results["errors"][name] = "skipped: the time budget is spent"
            continue
        phase_started = time.monotonic()
        try:
            phases[name]()
        except Exception as exc:  # keep the other phases' numbers
            results["errors"][name] = f"{type(exc).__name__}: {exc}"[:2000]
        print(f"{name}: {time.monotonic() - phase_started:.1f} s", flush=True)
        save()
    print(json.dumps(results, indent=1, default=str))
    return 1 if results["errors"] and args.dry_run else 0


if __name__ == "__main__":
    raise SystemExit(main())
