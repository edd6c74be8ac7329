"""The video service's warm model: which background a stream gets (diffusion when loaded, else procedural)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np

from tabagent.metrics import ServiceMetrics
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.background import Background, ProceduralBackground, procedural_info
from video_svc.config import VideoConfig
from video_svc.diffusion import DiffusionBackground, DiffusionModel, load_diffusion
from video_svc.encoder import aac_priming
from video_svc.session import render_offline, song_requests
from video_svc.styles import Style

log = logging.getLogger(__name__)


class ModelHolder:
    """Loads (in a thread, after the server starts) and hands out backgrounds
    (tabagent.serving.WarmModel; video_svc.session.Backgrounds).

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

    async def warm(self, metrics: ServiceMetrics) -> audio_pb2.ModelInfo:
        """Load in a thread and render a short test clip through every stage.

        Returns:
            The background streams get when they ask for diffusion.
        """
        started = time.perf_counter()
        await asyncio.to_thread(self.load)
        await asyncio.to_thread(self.warm_clip)
        log.info("video renderer warm in %.2f s (%s)", time.perf_counter() - started, self.diffusion_message)
        return self.info(self.diffusion is not None)

    def warm_clip(self) -> None:
        """Render a short clip through every stage (fonts, numpy, x264, AAC, the background)."""
        rate = 44_100
        t = np.arange(int(0.6 * rate)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[:, None]
        cfg = video_pb2.RenderConfig(
            width=320, height=180, fps=10, parts=["guitar"], title="warm-up", diffusion=self.diffusion is not None
        )
        note = audio_pb2.Note(pitch=45, start=0.1, end=0.4, velocity=0.8, string=1, fret=0)
        tuning = audio_pb2.Tuning(strings=[40, 45, 50, 55, 59, 64])
        data, session = render_offline(song_requests(cfg, tone, rate, {"guitar": (tuning, [note])}), self, self.config)
        log.debug("warm-up clip: %d bytes, %d frames", len(data), session.next_frame)

    async def close(self) -> None:
        """Nothing to release: the diffusion pipeline goes with the process."""

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
