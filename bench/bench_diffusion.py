"""Diffusion background speed on a GPU (or CPU): the service's img2img loop at sd-turbo's size.

    python bench/bench_diffusion.py                  # cuda when available
    python bench/bench_diffusion.py --frames 60 --width 512 --cadence 1
    python bench/bench_diffusion.py --json $OUT/diffusion.json   # on a lent GPU: frames per second as JSON

On a lent GPU machine it needs torch (there), diffusers, transformers, accelerate,
safetensors, huggingface_hub and tokenizers (carried: see docs/PERFORMANCE.md); it builds
everything from random weights and downloads nothing.

No weights are needed: (1) the tiny random pipeline is saved with save_pretrained and
loaded through `load_diffusion` (the service's path: fp16 on CUDA) and animates a few
frames; (2) a pipeline with sd-turbo's architecture (Stable Diffusion 2.1: UNet 865M
parameters, the SD VAE, a 23-layer CLIP text encoder) is built with random weights on the
device and timed through `DiffusionBackground.render`, with cues computed from a
synthesised song. Random weights cost exactly what trained ones do per step, so (2)
measures what sd-turbo would: ms per keyframe and the real-time factor at a cadence.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from evalkit.examples import make_song  # noqa: E402
from video_svc.config import VideoConfig  # noqa: E402
from video_svc.diffusion import (  # noqa: E402
    DiffusionBackground,
    DiffusionModel,
    load_diffusion,
    pick_device,
    prepare,
)
from video_svc.features import AudioAnalyzer  # noqa: E402
from video_svc.motion import Cue, CueTracker  # noqa: E402
from video_svc.styles import get_style  # noqa: E402
from video_svc.timeline import NoteTimeline  # noqa: E402
from video_svc.tiny_pipeline import build_tiny_pipeline, write_tokenizer_files  # noqa: E402


def song_cues(frames: int, fps: int, style: str) -> list[Cue]:
    """Cues of the first `frames` frames of a synthesised song."""
    song = make_song(frames / fps + 1.0, seed=1)
    analyzer = AudioAnalyzer(song.sample_rate)
    analyzer.push(song.mix)
    analyzer.finish()
    tracker = CueTracker(get_style(style).motion, fps)
    timeline = NoteTimeline()
    return [tracker.update(k, k / fps, analyzer.frame(k / fps, (k + 1) / fps), timeline) for k in range(frames)]


def sd_turbo_shaped(device: str):  # noqa: ANN201 - a diffusers pipeline
    """A StableDiffusionImg2ImgPipeline with sd-turbo's (SD 2.1) architecture and random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = write_tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512,
        )
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                num_attention_heads=16, projection_dim=512, hidden_act="gelu", max_position_embeddings=77,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
            )
        )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae.to(dtype), text_encoder=text.to(dtype), tokenizer=tokenizer, unet=unet.to(dtype),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return pipe


def breakdown(model: DiffusionModel, width: int, height: int, repeats: int = 20) -> str:
    """Milliseconds of one UNet step, one VAE encode and decode, and one whole img2img call."""
    import torch

    pipe = model.pipe
    dtype = next(pipe.unet.parameters()).dtype
    sync = torch.cuda.synchronize if model.device.startswith("cuda") else (lambda: None)
    image = torch.rand((1, 3, height, width), device=model.device, dtype=dtype)
    latents = torch.randn((1, 4, height // 8, width // 8), device=model.device, dtype=dtype)
    prompt = model.encode_prompt("a neon stage")
    t = torch.tensor([999], device=model.device)

    def timed(fn) -> float:  # noqa: ANN001
        with torch.inference_mode():
            fn()
            sync()
            started = time.perf_counter()
            for _ in range(repeats):
                fn()
            sync()
        return (time.perf_counter() - started) / repeats * 1e3

    unet = timed(lambda: pipe.unet(latents, t, encoder_hidden_states=prompt))
    encode = timed(lambda: pipe.vae.encode(image * 2 - 1).latent_dist.mode())
    decode = timed(lambda: pipe.vae.decode(latents))
    generator = torch.Generator(model.device).manual_seed(0)
    whole = timed(lambda: model.img2img(image, model.strength, prompt, generator))
    return f"UNet step {unet:.1f} ms, VAE encode {encode:.1f} ms, decode {decode:.1f} ms, img2img call {whole:.1f} ms"


def animate(model: DiffusionModel, cues: list[Cue], width: int, height: int) -> tuple[float, float, np.ndarray]:
    """Render the cues; returns (first frame s, mean s per later frame, last image)."""
    import torch

    background = DiffusionBackground(model, get_style("synthwave"), width, height, seed=1)
    started = time.perf_counter()
    image = background.render(cues[0])
    first = time.perf_counter() - started
    sync = torch.cuda.synchronize if model.device.startswith("cuda") else (lambda: None)
    images = []
    started = time.perf_counter()
    for cue in cues[1:]:
        image = background.render(cue)
        images.append(image)
    sync()
    per_frame = (time.perf_counter() - started) / max(len(cues) - 1, 1)
    if len(images) > 2:
        change = np.abs(images[-1].astype(int) - images[0].astype(int)).mean()
        assert np.isfinite(change) and change > 0, "the background did not move"
    return first, per_frame, image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/bench_diffusion.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=512, help="working width (sd-turbo: 512)")
    parser.add_argument("--cadence", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--skip-large", action="store_true", help="only the tiny pipeline")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"device": "", "cadences": {}}

    def save() -> None:
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))

    device = pick_device(args.device)
    import torch

    print(f"torch {torch.__version__} on {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))
    results["device"] = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    results["torch"] = torch.__version__
    cues = song_cues(args.frames, args.fps, "synthwave")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_pipeline(Path(tmp) / "tiny-sd")
        config = VideoConfig(
            diffusion_model_dir=str(folder), diffusion_width=64, diffusion_cadence=2, diffusion_device=device,
            hub_cache=tmp,
        )
        started = time.perf_counter()
        model, message = load_diffusion(config)
        assert model is not None, message
        print(f"tiny pipeline loaded by the service's code in {time.perf_counter() - started:.2f} s: {model.info().message}")
        first, per, image = animate(model, cues[:12], 320, 180)
        print(f"  tiny: first frame {first * 1e3:.0f} ms, then {per * 1e3:.1f} ms/frame, image {image.shape} {image.dtype}")
        results["tiny_ms_per_frame"] = per * 1e3
        save()
    if args.skip_large:
        return 0
    started = time.perf_counter()
    pipe = sd_turbo_shaped(device)
    params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    print(f"sd-turbo-shaped random pipeline (UNet {params:.0f}M parameters) built in {time.perf_counter() - started:.1f} s")
    base = DiffusionModel(
        pipe=pipe, name="sd-turbo-shaped", version="random", device=device, steps=args.steps,
        strength=args.strength, cadence=1, width=args.width, lock=threading.Lock(),
    )
    w = base.width // base.multiple * base.multiple
    h = max(base.multiple, int(round(w * 720 / 1280 / base.multiple)) * base.multiple)
    prepare(pipe, device)
    parts = breakdown(base, w, h)
    print(f"  {w}x{h}: {parts}")
    results.update(unet_millions=params, working_size=f"{w}x{h}", breakdown=parts, steps=args.steps,
                   strength=args.strength, fps_video=args.fps)
    save()
    for cadence in args.cadence:
        model = replace(base, cadence=cadence)
        first, per, image = animate(model, cues, 1280, 720)
        rtf = per * args.fps
        print(
            f"  {image.shape[1]}x{image.shape[0]}, {args.steps} steps x strength {args.strength} "
            f"(1 UNet step per keyframe), cadence {cadence}: {per * 1e3:.1f} ms/frame "
            f"(keyframe ~{per * cadence * 1e3:.1f} ms), RTF at {args.fps} fps {rtf:.2f}; first frame {first * 1e3:.0f} ms"
        )
        results["cadences"][str(cadence)] = {  # type: ignore[index]
            "ms_per_frame": per * 1e3, "frames_per_second": 1.0 / per, "rtf": rtf, "first_frame_ms": first * 1e3}
        save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
