"""The service's model: which background a stream gets (diffusion when loaded, else procedural)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from tabagent.metrics import ServiceMetrics
from tabagent.serving import Health
from tabagent.v1 import audio_pb2
from video_svc.background import Background, ProceduralBackground, procedural_info
from video_svc.config import VideoConfig
from video_svc.diffusion import DiffusionBackground, DiffusionModel, load_diffusion
from video_svc.encoder import aac_priming
from video_svc.styles import Style

log = logging.getLogger(__name__)


class VideoBackend:
    """Loads (in a thread, after the server starts) and hands out backgrounds.

    Args:
        config: the service configuration.
        diffusion: an already loaded pipeline (tests, embedding); otherwise `load()` looks
            for weights unless VIDEO_DIFFUSION=off.
    """

    def __init__(self, config: VideoConfig, diffusion: DiffusionModel | None = None) -> None:
        self.config = config
        self.diffusion = diffusion
        self.diffusion_message = "diffusion is not loaded yet"
        if diffusion is not None:
            self.diffusion_message = f"loaded {diffusion.name}"
        elif config.diffusion == "off":
            self.diffusion_message = "diffusion is switched off (VIDEO_DIFFUSION=off)"
        self._loaded = threading.Event()
        self.health: Health | None = None
        self.metrics: ServiceMetrics | None = None

    @property
    def loaded(self) -> bool:
        """Whether `load()` has finished."""
        return self._loaded.is_set()

    def load(self) -> None:
        """Find and warm the diffusion pipeline (if any) and the encoders. Blocking."""
        for rate in (44_100, 48_000):
            for channels in (1, 2):
                aac_priming(rate, channels)
        if self.diffusion is None and self.config.diffusion != "off":
            self.diffusion, self.diffusion_message = load_diffusion(self.config)
            log.info("diffusion background: %s", self.diffusion_message)
        self._loaded.set()

    async def warm(self) -> None:
        """Load in a thread, render a short test clip through every stage, then report SERVING."""
        from video_svc.session import warm_clip

        started = time.perf_counter()
        await asyncio.to_thread(self.load)
        await asyncio.to_thread(warm_clip, self)
        took = time.perf_counter() - started
        if self.metrics is not None:
            info = self.info(self.diffusion is not None)
            self.metrics.set_model(info.name, info.version, info.device, info.fallback, took)
        log.info("video renderer warm in %.2f s (%s)", took, self.diffusion_message)
        if self.health is not None:
            await self.health.set_serving(True)

    def uses_diffusion(self, requested: bool) -> bool:
        """Whether a stream that asked (or not) for diffusion gets it."""
        return requested and self.diffusion is not None

    def info(self, requested: bool) -> audio_pb2.ModelInfo:
        """The VideoInfo.background of a stream."""
        if self.uses_diffusion(requested):
            assert self.diffusion is not None
            return self.diffusion.info()
        if requested:
            return procedural_info(
                f"diffusion background unavailable: {self.diffusion_message}; using the procedural background",
                fallback=True,
            )
        return procedural_info("procedural audio-reactive background (diffusion not requested)")

    def background(self, requested: bool, style: Style, width: int, height: int, seed: int) -> Background:
        """A new background for one stream."""
        if self.uses_diffusion(requested):
            assert self.diffusion is not None
            return DiffusionBackground(self.diffusion, style, width, height, seed)
        return ProceduralBackground(style, width, height, seed)
