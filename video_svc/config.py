"""The video renderer's settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tabagent.serving import env_float, env_int
from tabagent.serving.auth import reflection_from_env, service_token_from_env


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _home_hub() -> str:
    home = os.environ.get("HF_HOME", "").strip()
    return os.path.join(home, "hub") if home else ""


@dataclass(frozen=True)
class VideoConfig:
    """Everything the video service reads from its environment.

    Attributes mirror the variables (`VIDEO_*`, `DIFFUSION_*`); see `from_env`.
    """

    host: str = "[::]"
    port: int = 50053
    metrics_port: int = 9103
    max_streams: int = 2
    max_queue: int = 4
    max_width: int = 3840
    max_height: int = 2160
    max_seconds: float = 3600.0
    x264_preset: str = "superfast"
    crf: int = 23
    encoder_threads: int = 2
    paint_threads: int = 1
    paint_reference: bool = False           # the slower reference paint path (benchmarks, tests)
    audio_bitrate: int = 192_000
    diffusion: str = "auto"                 # "auto": load when weights are found; "off"
    diffusion_model_dir: str = ""
    diffusion_model: str = "stabilityai/sd-turbo"
    hub_cache: str = ""                     # "" = huggingface_hub's default cache
    diffusion_device: str = "auto"
    diffusion_steps: int = 2
    diffusion_strength: float = 0.5
    diffusion_cadence: int = 3              # diffuse every Nth frame, ease in between
    diffusion_width: int = 512              # working width; height follows the video's aspect
    grace: float = 30.0                     # seconds running streams get on SIGTERM
    service_token: str = ""                 # TABAGENT_SERVICE_TOKEN: callers must send it ("" = open)
    reflection: bool = False                # TABAGENT_GRPC_REFLECTION=1 answers gRPC reflection

    @classmethod
    def from_env(cls) -> VideoConfig:
        """Read the configuration, failing fast on malformed values.

        Variables: VIDEO_HOST, VIDEO_PORT, VIDEO_METRICS_PORT, VIDEO_MAX_STREAMS, VIDEO_MAX_QUEUE,
        VIDEO_MAX_WIDTH, VIDEO_MAX_HEIGHT, VIDEO_MAX_SECONDS, VIDEO_X264_PRESET, VIDEO_CRF,
        VIDEO_ENCODER_THREADS, VIDEO_PAINT_THREADS, VIDEO_PAINT_REFERENCE (1: the slower
        reference paint path the fast one is checked against), VIDEO_AUDIO_BITRATE, VIDEO_DIFFUSION
        (auto|off), DIFFUSION_MODEL_DIR, DIFFUSION_MODEL (hub repo id), HF_HUB_CACHE or
        HF_HOME (the hub cache, read offline), DIFFUSION_DEVICE
        (auto|cpu|cuda|cuda:N), DIFFUSION_STEPS, DIFFUSION_STRENGTH, DIFFUSION_CADENCE,
        DIFFUSION_WIDTH, VIDEO_GRACE_SECONDS.
        """
        cfg = cls(
            host=_env_str("VIDEO_HOST", cls.host),
            port=env_int("VIDEO_PORT", cls.port),
            metrics_port=env_int("VIDEO_METRICS_PORT", cls.metrics_port),
            grace=env_float("VIDEO_GRACE_SECONDS", cls.grace),
            service_token=service_token_from_env(),
            reflection=reflection_from_env(),
            max_streams=env_int("VIDEO_MAX_STREAMS", cls.max_streams),
            max_queue=env_int("VIDEO_MAX_QUEUE", cls.max_queue),
            max_width=env_int("VIDEO_MAX_WIDTH", cls.max_width),
            max_height=env_int("VIDEO_MAX_HEIGHT", cls.max_height),
            max_seconds=env_float("VIDEO_MAX_SECONDS", cls.max_seconds),
            x264_preset=_env_str("VIDEO_X264_PRESET", cls.x264_preset),
            crf=env_int("VIDEO_CRF", cls.crf),
            encoder_threads=env_int("VIDEO_ENCODER_THREADS", cls.encoder_threads),
            paint_threads=env_int("VIDEO_PAINT_THREADS", cls.paint_threads),
            paint_reference=env_int("VIDEO_PAINT_REFERENCE", int(cls.paint_reference)) != 0,
            audio_bitrate=env_int("VIDEO_AUDIO_BITRATE", cls.audio_bitrate),
            diffusion=_env_str("VIDEO_DIFFUSION", cls.diffusion).lower(),
            diffusion_model_dir=os.environ.get("DIFFUSION_MODEL_DIR", "").strip(),
            diffusion_model=_env_str("DIFFUSION_MODEL", cls.diffusion_model),
            hub_cache=os.environ.get("HF_HUB_CACHE", "").strip() or _home_hub(),
            diffusion_device=_env_str("DIFFUSION_DEVICE", cls.diffusion_device),
            diffusion_steps=env_int("DIFFUSION_STEPS", cls.diffusion_steps),
            diffusion_strength=env_float("DIFFUSION_STRENGTH", cls.diffusion_strength),
            diffusion_cadence=env_int("DIFFUSION_CADENCE", cls.diffusion_cadence),
            diffusion_width=env_int("DIFFUSION_WIDTH", cls.diffusion_width),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse settings the service cannot run with (SystemExit names the variable)."""
        checks = [
            (self.max_streams >= 1, "VIDEO_MAX_STREAMS must be >= 1"),
            (self.max_queue >= 0, "VIDEO_MAX_QUEUE must be >= 0"),
            (16 <= self.max_width <= 7680, "VIDEO_MAX_WIDTH must be 16..7680"),
            (16 <= self.max_height <= 4320, "VIDEO_MAX_HEIGHT must be 16..4320"),
            (self.max_seconds > 0, "VIDEO_MAX_SECONDS must be > 0"),
            (0 <= self.crf <= 51, "VIDEO_CRF must be 0..51"),
            (self.encoder_threads >= 0, "VIDEO_ENCODER_THREADS must be >= 0 (0 = auto)"),
            (self.paint_threads >= 0, "VIDEO_PAINT_THREADS must be >= 0"),
            (self.audio_bitrate >= 32_000, "VIDEO_AUDIO_BITRATE must be >= 32000"),
            (self.diffusion in ("auto", "off"), "VIDEO_DIFFUSION must be auto or off"),
            (1 <= self.diffusion_steps <= 50, "DIFFUSION_STEPS must be 1..50"),
            (0.05 <= self.diffusion_strength <= 1.0, "DIFFUSION_STRENGTH must be 0.05..1"),
            (1 <= self.diffusion_cadence <= 30, "DIFFUSION_CADENCE must be 1..30"),
            (64 <= self.diffusion_width <= 2048, "DIFFUSION_WIDTH must be 64..2048"),
        ]
        for ok, message in checks:
            if not ok:
                raise SystemExit(message)
