"""The diffusion background: a warm img2img pipeline painting Deforum-style from audio-driven keyframes.

Each frame warps the previous one by the frame's keyframe (zoom, rotation, translation
driven by beats, onsets and loudness); every `cadence`-th frame the warped image goes
through img2img (sd-turbo style: 1-4 steps, no guidance) with the style's prompt, and
the frames in between ease from the warped picture towards that latest keyframe.
Weights come from a local diffusers folder (DIFFUSION_MODEL_DIR) or the Hugging Face
hub cache, offline; without them the service uses the procedural background.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tabagent.v1 import audio_pb2
from video_svc.background import ProceduralBackground
from video_svc.config import VideoConfig
from video_svc.motion import Cue, Keyframe
from video_svc.styles import Style

log = logging.getLogger(__name__)

REFERENCE_WIDTH = 512.0      # keyframe translations are in pixels of a 512-wide image
COLOR_COHERENCE = 0.5        # pull each keyframe's colour statistics this far to the first one


def find_weights(config: VideoConfig) -> tuple[str, str] | None:
    """Where the diffusion weights are: (path, display name), or None.

    Looks at DIFFUSION_MODEL_DIR first (a folder written by `save_pretrained`), then at
    the hub cache for DIFFUSION_MODEL, without touching the network.
    """
    if config.diffusion_model_dir:
        folder = Path(config.diffusion_model_dir).expanduser()
        if (folder / "model_index.json").is_file():
            return str(folder), folder.name
        log.warning("DIFFUSION_MODEL_DIR=%s holds no model_index.json; ignoring it", folder)
    if config.diffusion_model:
        if not (_hub_cache(config) / ("models--" + config.diffusion_model.replace("/", "--"))).is_dir():
            # Not cached: said without importing huggingface_hub (a second of start-up).
            log.info("no cached weights for %s in %s", config.diffusion_model, _hub_cache(config))
            return None
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(
                config.diffusion_model, local_files_only=True, cache_dir=config.hub_cache or None
            )
        except Exception as exc:  # not cached (LocalEntryNotFoundError) or hub not installed
            log.info("no cached weights for %s: %s", config.diffusion_model, type(exc).__name__)
            return None
        if (Path(path) / "model_index.json").is_file():
            return path, config.diffusion_model
    return None


def _hub_cache(config: VideoConfig) -> Path:
    """The hub cache folder huggingface_hub reads (its own lookup of the environment)."""
    if config.hub_cache:
        return Path(config.hub_cache).expanduser()
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def pick_device(spec: str) -> str:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


@dataclass
class DiffusionModel:
    """A loaded img2img pipeline and how to run it; one per process, shared by streams."""

    pipe: Any
    name: str
    version: str
    device: str
    steps: int
    strength: float
    cadence: int
    width: int
    lock: threading.Lock

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor times the UNet's downsampling)."""
        vae = int(getattr(self.pipe, "vae_scale_factor", 8))
        blocks = len(self.pipe.unet.config.block_out_channels)
        return vae * 2 ** (blocks - 1)

    def info(self) -> audio_pb2.ModelInfo:
        return audio_pb2.ModelInfo(
            name=self.name,
            version=self.version,
            backend="diffusers",
            device=self.device,
            fallback=False,
            message=(
                f"Deforum-style img2img every {self.cadence} frame(s), {self.steps} steps, "
                f"strength {self.strength:g}, {self.width} px wide"
            ),
        )

    def img2img(self, image: Any, strength: float, prompt: Any, generator: Any) -> Any:
        """One img2img call on a (1, 3, h, w) tensor in [0, 1]; returns the same shape."""
        steps = max(self.steps, math.ceil(1.0 / max(strength, 1e-3)))
        kwargs: dict[str, Any] = {
            "image": image,
            "strength": float(strength),
            "num_inference_steps": steps,
            "guidance_scale": 0.0,
            "generator": generator,
            "output_type": "pt",
        }
        if isinstance(prompt, str):
            kwargs["prompt"] = prompt
        else:
            kwargs["prompt_embeds"] = prompt
        with self.lock:
            out = self.pipe(**kwargs).images
        return out.to(image.device, image.dtype).clamp(0, 1)

    def encode_prompt(self, text: str) -> Any:
        """Prompt embeddings, computed once per stream when the pipeline allows it."""
        encode = getattr(self.pipe, "encode_prompt", None)
        if encode is None:
            return text
        try:
            with self.lock:
                result = encode(text, self.device, 1, False)
        except TypeError:  # a pipeline with another signature (e.g. SDXL)
            return text
        if isinstance(result, tuple) and len(result) == 2:
            return result[0]
        return text


def load_diffusion(config: VideoConfig) -> tuple[DiffusionModel | None, str]:
    """Load and warm the pipeline when weights are present.

    Returns:
        (model, message): model is None when there are no weights or loading failed,
        and the message says why.
    """
    found = find_weights(config)
    if found is None:
        where = f"DIFFUSION_MODEL_DIR={config.diffusion_model_dir!r}" if config.diffusion_model_dir else "no DIFFUSION_MODEL_DIR"
        return None, f"no diffusion weights ({where}; {config.diffusion_model} not in the hub cache)"
    path, name = found
    try:
        model = load_pipeline(path, name, config)
    except Exception as exc:
        log.exception("could not load the diffusion pipeline from %s", path)
        return None, f"diffusion weights at {path} failed to load ({type(exc).__name__}: {exc})"
    return model, f"loaded {name}"


def load_pipeline(path: str, name: str, config: VideoConfig) -> DiffusionModel:
    """Load an img2img pipeline from a diffusers folder and warm it with one call."""
    import diffusers
    import torch
    from diffusers import AutoPipelineForImage2Image
    from diffusers.utils import deprecation_utils
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    device = pick_device(config.diffusion_device)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    started = time.perf_counter()
    # Loading bars belong on a terminal, not in a service's log.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    # Newer diffusers take `dtype` (and deprecate `torch_dtype`); older ones only `torch_dtype`.
    dtype_key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: dtype, "local_files_only": True, "safety_checker": None}
    try:
        pipe = AutoPipelineForImage2Image.from_pretrained(path, **kwargs)
    except (OSError, ValueError):
        # Some repos hold only the half-precision files.
        pipe = AutoPipelineForImage2Image.from_pretrained(path, variant="fp16", **kwargs)
    pipe = prepare(pipe, device)
    index = json.loads((Path(path) / "model_index.json").read_text())
    version = f"diffusers {diffusers.__version__} (saved by {index.get('_diffusers_version', '?')})"
    model = DiffusionModel(
        pipe=pipe,
        name=name,
        version=version,
        device=device,
        steps=config.diffusion_steps,
        strength=config.diffusion_strength,
        cadence=config.diffusion_cadence,
        width=config.diffusion_width,
        lock=threading.Lock(),
    )
    m = model.multiple
    width = max(m, config.diffusion_width // m * m)
    probe = torch.rand((1, 3, width // 2 // m * m or m, width), generator=torch.Generator().manual_seed(0))
    model.img2img(probe.to(device, dtype), model.strength, "warm-up", torch.Generator(device).manual_seed(0))
    log.info("diffusion pipeline %s on %s warm in %.1f s", name, device, time.perf_counter() - started)
    return model


def prepare(pipe: Any, device: str) -> Any:
    """Move a pipeline to its device for inference, without progress bars.

    (Channels-last layout was measured on an H200 and did not help: at one image and
    1-2 steps the UNet is bound by kernel launches, not by convolution throughput.)
    """
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusionBackground:
    """One stream's Deforum-style animation; implements the Background protocol.

    Args:
        model: the shared pipeline.
        style: gives the prompt and the palette of the first frame.
        width, height: the video's size (the working size keeps its aspect).
        seed: the stream's seed.
    """

    def __init__(self, model: DiffusionModel, style: Style, width: int, height: int, seed: int = 0) -> None:
        import torch

        self.torch = torch
        self.model = model
        m = model.multiple
        self.w = max(m, model.width // m * m)
        self.h = max(m, int(round(self.w * height / width / m)) * m)
        self.dtype = torch.float16 if model.device.startswith("cuda") else torch.float32
        self.generator = torch.Generator(model.device).manual_seed(int(seed))
        self.prompt = model.encode_prompt(style.prompt)
        self.seed_image = ProceduralBackground(style, self.w, self.h, seed)
        self.shown: Any = None        # last displayed image, (1, 3, h, w) in [0, 1]
        self.target: Any = None       # latest diffused keyframe, moving with the camera
        self.since_key = 0
        self.reference: tuple[Any, Any] | None = None

    def render(self, cue: Cue) -> np.ndarray:
        """The background of the frame of `cue` at the working size, RGB uint8."""
        torch = self.torch
        with torch.inference_mode():
            if self.shown is None:
                # The procedural picture (drawn at most 256 wide) seeds the first keyframe.
                start = torch.from_numpy(self.seed_image.render(cue)).permute(2, 0, 1)[None].float() / 255.0
                start = torch.nn.functional.interpolate(start, size=(self.h, self.w), mode="bilinear")
                init = start.to(self.model.device, self.dtype)
                key = self.model.img2img(init, max(self.model.strength, 0.85), self.prompt, self.generator)
                self.reference = (key.mean(dim=(2, 3), keepdim=True), key.std(dim=(2, 3), keepdim=True))
                self.shown = self.target = key
                self.since_key = 0
            else:
                self.shown = warp(self.shown, cue.keyframe, self.w)
                self.target = warp(self.target, cue.keyframe, self.w)
                if cue.index % self.model.cadence == 0:
                    strength = min(0.95, max(0.1, self.model.strength + 0.25 * cue.onset + 0.1 * cue.beat))
                    key = self.model.img2img(self.shown, strength, self.prompt, self.generator)
                    self.target = self._coherent(key)
                    self.since_key = 0
                self.since_key += 1
                alpha = min(1.0, self.since_key / self.model.cadence)
                self.shown = self.shown * (1.0 - alpha) + self.target * alpha
            image = (self.shown[0].permute(1, 2, 0).float().clamp(0, 1) * 255.0).to(torch.uint8)
            return image.cpu().numpy()

    def _coherent(self, image: Any) -> Any:
        """Pull the colour statistics towards the first keyframe's (Deforum's colour coherence)."""
        if self.reference is None:
            return image
        mean, std = image.mean(dim=(2, 3), keepdim=True), image.std(dim=(2, 3), keepdim=True)
        ref_mean, ref_std = self.reference
        matched = (image - mean) / (std + 1e-4) * ref_std + ref_mean
        return (image * (1 - COLOR_COHERENCE) + matched * COLOR_COHERENCE).clamp(0, 1)


def warp(image: Any, kf: Keyframe, width: int) -> Any:
    """Apply one frame's 2D camera motion (zoom about the centre, rotation, translation)."""
    import torch
    import torch.nn.functional as F

    angle = math.radians(kf.angle)
    scale = 1.0 / max(kf.zoom, 1e-3)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # affine_grid works in [-1, 1]; a translation of tx pixels is 2 * tx / width there.
    tx = -2.0 * kf.tx * (width / REFERENCE_WIDTH) / width
    ty = -2.0 * kf.ty * (width / REFERENCE_WIDTH) / image.shape[2]
    # Rotate in pixel space: normalised x and y have different pixel sizes.
    aspect = image.shape[3] / image.shape[2]
    theta = torch.tensor(
        [[[cos, -sin / aspect, tx], [sin * aspect, cos, ty]]], dtype=torch.float32, device=image.device
    )
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.to(image.dtype)
