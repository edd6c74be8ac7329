"""Video renderer speed: real-time factor of the tab play-along, procedural and (tiny) diffusion.

    .venv/bin/python bench/bench_video.py                      # 30 s song, 1280x720@30, via gRPC
    .venv/bin/python bench/bench_video.py --seconds 60 --style synthwave --preset veryfast
    .venv/bin/python bench/bench_video.py --diffusion          # also the tiny random pipeline
    .venv/bin/python bench/bench_video.py --compare --write    # reference vs fast paint path, same frames?
    .venv/bin/python bench/bench_video.py --long --write       # 30 s, 3 rounds, other presets too

`--compare` renders the song alternately with the reference paint path
(VIDEO_PAINT_REFERENCE=1: a fresh swscale context and packed frame copies per frame, as
before) and the fast one (one kept swscale context, painting straight into the frame the
encoder takes), `--rounds` times each, and checks that both give the same MP4 bytes and
the same decoded pixels in frames sampled once a second (their hashes are printed);
`--presets` adds the fast path with other x264 presets (opt-in: smaller or larger files,
different pixels), with the PSNR of their sampled frames against the default's. `--write`
puts the comparison in docs/PERFORMANCE.md.

The song comes from `evalkit.examples.make_song` (guitar, bass, drums; known notes). Each
run streams the whole song (audio, parts, notes, beats, in the order the chain sends
them) to a real in-process VideoRenderer server and reads the fragmented MP4 back; it
prints wall time, the real-time factor (wall / song seconds: below 1 keeps ahead of the
music), CPU seconds per song second (what the renderer costs the machine, whatever else
runs on it) and the wall time to the first playable fragment. The tiny diffusion
pipeline has random weights: its numbers measure the plumbing (warp, img2img call,
upload/download), not sd-turbo.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import av  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

from evalkit.examples import Song, make_song  # noqa: E402
from tabagent import tuning  # noqa: E402
from tabagent.serving import channel_options  # noqa: E402
from tabagent.v1 import video_pb2, video_pb2_grpc  # noqa: E402
from video_svc.config import VideoConfig  # noqa: E402
from video_svc.holder import ModelHolder  # noqa: E402
from video_svc.server import create_server  # noqa: E402
from video_svc.session import song_requests  # noqa: E402

log = logging.getLogger("bench.video")


@dataclass
class Result:
    """One measured render."""

    name: str
    size: str
    preset: str
    song_seconds: float
    wall_seconds: float
    cpu_seconds: float
    first_fragment_seconds: float
    frames: int
    megabytes: float

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.song_seconds

    @property
    def cpu_per_second(self) -> float:
        return self.cpu_seconds / self.song_seconds

    def line(self) -> str:
        return (
            f"{self.name:<22} {self.size:>13} {self.preset:>9}  song {self.song_seconds:5.1f} s  "
            f"wall {self.wall_seconds:6.2f} s  RTF {self.rtf:5.3f}  CPU {self.cpu_per_second:5.3f} s/s  "
            f"first fragment {self.first_fragment_seconds:5.2f} s  {self.frames} frames  {self.megabytes:.1f} MB"
        )


def _requests(song: Song, config: video_pb2.RenderConfig) -> list[video_pb2.RenderRequest]:
    parts = {n: (tuning.standard(n).to_proto(), [x.to_proto() for x in notes]) for n, notes in song.parts.items()}
    beat = 60.0 / song.bpm
    times = [0.5 + i * beat for i in range(int((song.seconds - 0.5) / beat) + 1)]
    beats = video_pb2.Beats(tempo=song.bpm, times=times, beats_per_bar=4, downbeats=times[::4])
    return song_requests(config, song.mix, song.sample_rate, parts, beats)


async def _measure(
    name: str, config: VideoConfig, backend: ModelHolder, requests: list[video_pb2.RenderRequest], seconds: float
) -> Result:
    server, port = create_server(config, backend, address="127.0.0.1:0")
    await server.start()
    await server.warm()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    stub = video_pb2_grpc.VideoRendererStub(channel)
    first = 0.0
    frames = 0
    size = 0
    cfg = requests[0].config
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        async for resp in stub.Render(iter(requests), timeout=3600):
            if resp.HasField("fragment"):
                size += len(resp.fragment.data)
                if not resp.fragment.init and not first:
                    first = time.perf_counter() - started
            elif resp.HasField("summary"):
                frames = resp.summary.frames
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        await channel.close()
        await server.stop(None)
    return Result(
        name, f"{cfg.width}x{cfg.height}@{cfg.fps}", config.x264_preset, seconds, wall, cpu, first, frames, size / 1e6
    )


async def run(args: argparse.Namespace) -> list[Result]:
    song = make_song(args.seconds, bpm=100.0, drums=True, seed=1)
    base = VideoConfig.from_env()
    config = replace(base, diffusion="off", x264_preset=args.preset or base.x264_preset)
    results = []
    for style in args.style:
        request = video_pb2.RenderConfig(
            width=args.width, height=args.height, fps=args.fps, style=style, title="Benchmark",
            parts=["guitar", "bass"],
        )
        result = await _measure(f"procedural {style}", config, ModelHolder(config), _requests(song, request), song.seconds)
        print(result.line(), flush=True)
        results.append(result)
    if args.diffusion:
        from video_svc.diffusion import load_diffusion
        from video_svc.tiny_pipeline import build_tiny_pipeline

        with tempfile.TemporaryDirectory() as tmp:
            folder = build_tiny_pipeline(Path(tmp) / "tiny-sd")
            dcfg = replace(
                config, diffusion="auto", diffusion_model_dir=str(folder), diffusion_width=args.diffusion_width,
                diffusion_cadence=args.cadence, diffusion_device=args.device,
            )
            model, message = load_diffusion(dcfg)
            if model is None:
                raise SystemExit(message)
            w, h = args.diffusion_size
            request = video_pb2.RenderConfig(width=w, height=h, fps=args.fps, style=args.style[0], diffusion=True)
            short = make_song(min(args.seconds, args.diffusion_seconds), bpm=100.0, seed=1)
            result = await _measure(
                f"diffusion tiny c{args.cadence}", dcfg, ModelHolder(dcfg, diffusion=model),
                _requests(short, request), short.seconds,
            )
            print(result.line(), flush=True)
            results.append(result)
    return results


def sampled_frames(data: bytes, every: int) -> list[np.ndarray]:
    """Every `every`-th decoded frame of an MP4 as RGB arrays."""
    frames = []
    with av.open(io.BytesIO(data)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


async def _render_bytes(config: VideoConfig, requests: list[video_pb2.RenderRequest]) -> tuple[float, float, bytes]:
    """One render through an in-process server: (wall s, CPU s, the MP4)."""
    backend = ModelHolder(config)
    server, port = create_server(config, backend, address="127.0.0.1:0")
    await server.start()
    await server.warm()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    stub = video_pb2_grpc.VideoRendererStub(channel)
    data = bytearray()
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        async for resp in stub.Render(iter(requests), timeout=3600):
            if resp.HasField("fragment"):
                data += resp.fragment.data
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        await channel.close()
        await server.stop(None)
    return wall, cpu, bytes(data)


async def compare(args: argparse.Namespace) -> str:
    """Reference vs fast paint path (and other presets), alternating; the report section."""
    from common import command, machine, machine_line, table

    info = machine()
    song = make_song(args.seconds, bpm=100.0, drums=True, seed=1)
    base = replace(VideoConfig.from_env(), diffusion="off")
    request = video_pb2.RenderConfig(width=args.width, height=args.height, fps=args.fps, style=args.style[0],
                                     title="Benchmark", parts=["guitar", "bass"])
    requests = _requests(song, request)
    plan = [("reference paint path (as before)", replace(base, paint_reference=True)),
            ("fast paint path (new default)", replace(base, paint_reference=False))]
    plan += [(f"fast path, x264 preset {p} (opt-in)", replace(base, x264_preset=p))
             for p in args.presets.split(",") if p]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in plan}
    outputs: dict[str, bytes] = {}
    for r in range(args.rounds):
        for name, config in plan:
            wall, cpu, data = await _render_bytes(config, requests)
            runs[name].append((wall, cpu))
            outputs.setdefault(name, data)
            print(f"  round {r + 1}: {name}: {wall:.2f} s wall ({song.seconds / wall:.2f}x real time), "
                  f"{cpu / song.seconds:.3f} CPU s per song s", flush=True)
    every = args.fps
    frames = {name: sampled_frames(data, every) for name, data in outputs.items()}
    ref_name, fast_name = plan[0][0], plan[1][0]
    same_bytes = outputs[ref_name] == outputs[fast_name]
    same_pixels = len(frames[ref_name]) == len(frames[fast_name]) and all(
        np.array_equal(a, b) for a, b in zip(frames[ref_name], frames[fast_name], strict=True))
    digest = hashlib.sha1(b"".join(f.tobytes() for f in frames[fast_name])).hexdigest()[:16]
    best_ref = min(w for w, _ in runs[ref_name])
    ref_cpu = statistics.median(c for _, c in runs[ref_name]) / song.seconds
    rows = []
    for name, _ in plan:
        wall = min(w for w, _ in runs[name])
        cpu = statistics.median(c for _, c in runs[name]) / song.seconds
        quality = "same as reference" if name == fast_name and same_pixels else ""
        if name not in (ref_name, fast_name):
            quality = f"PSNR {min(psnr(a, b) for a, b in zip(frames[fast_name], frames[name], strict=False)):.1f} dB"
        rows.append([name, f"{wall:.2f}", f"**{song.seconds / wall:.2f}x**", f"{best_ref / wall:.2f}x",
                     f"{cpu:.3f}", f"{ref_cpu / cpu:.2f}x", f"{song.seconds / (song.seconds * cpu / 2):.1f}x",
                     f"{len(outputs[name]) / 1e6:.1f}", quality or "-"])
    head = ["configuration", "best wall s", "x real time", "vs reference (wall)", "CPU s per song s",
            "CPU: reference / this", "x real time if 2 cores were all its", "MB", "frames"]
    verdict = "meets" if song.seconds / min(w for w, _ in runs[fast_name]) >= 5.0 else "does not meet"
    return "\n".join([
        f"### 7. Video: {args.width}x{args.height}@{args.fps}, {args.seconds:g} s song, reference vs fast paint path",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; style {args.style[0]}, guitar + bass panels, x264 {base.x264_preset} "
        f"(zerolatency, {base.encoder_threads} frame threads), whole song streamed through an in-process "
        f"VideoRenderer over gRPC, {args.rounds} alternating round(s), best wall time.",
        "",
        table(head, rows),
        "",
        f"Same frames: the two paint paths gave {'identical' if same_bytes else 'DIFFERENT'} MP4 bytes and "
        f"{'identical' if same_pixels else 'DIFFERENT'} decoded pixels in all {len(frames[fast_name])} frames "
        f"sampled once a second (SHA-1 of the sampled pixels {digest}). 5x real-time goal: {verdict} "
        f"({song.seconds / min(w for w, _ in runs[fast_name]):.2f}x). The last speed column is the "
        "ceiling the CPU seconds allow on two cores (song seconds / (CPU seconds / 2)): on a machine "
        "shared with other jobs the wall times measure how much of the cores a run got.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_video.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--style", nargs="+", default=["guitar_hero"])
    parser.add_argument("--preset", default="", help="x264 preset (default: VIDEO_X264_PRESET or superfast)")
    parser.add_argument("--diffusion", action="store_true", help="also run the tiny random diffusion pipeline")
    parser.add_argument("--diffusion-size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--diffusion-width", type=int, default=128, help="working width of the img2img")
    parser.add_argument("--diffusion-seconds", type=float, default=10.0)
    parser.add_argument("--cadence", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--compare", action="store_true", help="reference vs fast paint path (same frames?)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --compare")
    parser.add_argument("--presets", default="", help="with --compare: other x264 presets, e.g. ultrafast")
    parser.add_argument("--write", action="store_true", help="with --compare: update docs/PERFORMANCE.md")
    parser.add_argument("--long", action="store_true",
                        help="--compare over 30 s, 3 rounds, presets ultrafast and veryfast (its own section)")
    args = parser.parse_args(argv)
    if args.long:
        args.compare = True
        args.seconds, args.rounds = max(args.seconds, 30.0), max(args.rounds, 3)
        args.presets = args.presets or "ultrafast,veryfast"
    logging.basicConfig(level=os.environ.get("TABAGENT_LOG_LEVEL", "WARNING").upper())
    print(f"video renderer benchmark on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f})")
    if args.compare:
        text = asyncio.run(compare(args))
        print(text)
        if args.write:
            from common import write_section

            write_section("video", text, long=args.long)
        return 0
    results = asyncio.run(run(args))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) | {"rtf": r.rtf} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
