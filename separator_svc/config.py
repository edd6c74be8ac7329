"""Separator settings, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from separator_svc.accel_settings import Acceleration
from separator_svc.fetch import FetchConfig
from tabagent.audio import MAX_CHUNK_BYTES
from tabagent.serving import env_float, env_int
from tabagent.serving.auth import reflection_from_env, service_token_from_env


def default_hub_cache() -> Path:
    """The hub cache folder huggingface_hub would use, from the environment."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(home).expanduser() / "hub"


def _models(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if not names:
        raise SystemExit("SEPARATOR_MODELS must name at least one model")
    return names


@dataclass(frozen=True)
class SeparatorConfig:
    """How the separator runs.

    Environment (defaults in brackets):
        SEPARATOR_HOST [::], SEPARATOR_PORT [50051], SEPARATOR_METRICS_PORT [9101, 0 = off];
        SEPARATOR_MODELS [auto]: comma-separated models loaded at start-up, the first
        is the default ("dsp" is always available too; "auto" is htdemucs_6s when its
        weights are here or can be downloaded, else another local Demucs, see model.py);
        DEMUCS_MODEL_DIR: a demucs local repo folder, tried before the hub cache;
        HF_HUB_CACHE / HF_HOME: the Hugging Face hub cache (read, never downloaded to);
        TABAGENT_OFFLINE, DEMUCS_REMOTE_URL, DEMUCS_REMOTE_CATALOG, DEMUCS_DOWNLOAD_TIMEOUT,
        TORCH_HOME: downloads from Demucs's remote (`separator_svc.fetch.FetchConfig`);
        SEPARATOR_DEVICE [auto]: auto, cpu, cuda, cuda:N;
        SEPARATOR_MAX_STREAMS [2], SEPARATOR_MAX_QUEUE [8]: concurrent and waiting streams;
        SEPARATOR_READ_AHEAD [8]: audio chunks buffered per stream before flow control;
        SEPARATOR_CHUNK_SECONDS [1.0]: length of the returned stem chunks;
        SEPARATOR_MAX_BATCH [1], SEPARATOR_BATCH_WAIT_MS [10]: dynamic batching of
        segments across streams (1 = off);
        SEPARATOR_WORKERS [0 = auto], SEPARATOR_THREADS [0 = auto]: segments in flight per
        stream and torch threads per forward pass; SEPARATOR_ATTENTION [sdpa]: sdpa or
        native; SEPARATOR_PRUNE [1]: compute only the requested sources;
        SEPARATOR_PRECISION [fp32]: fp32, tf32, bf16, bf16-transformer, fp16 (all but
        fp32 change the stems slightly);
        SEPARATOR_COMPILE [off]: off, default, reduce-overhead, max-autotune
        (see separator_svc.accel);
        TABAGENT_MAX_SECONDS [3600]: longest song accepted.
    """

    host: str = "[::]"
    port: int = 50051
    metrics_port: int = 9101
    models: tuple[str, ...] = ("auto",)
    model_dir: Path | None = None
    hub_cache: Path | None = None
    fetch: FetchConfig = field(default_factory=FetchConfig)
    device: str = "auto"
    max_streams: int = 2
    max_queue: int = 8
    read_ahead: int = 8
    chunk_seconds: float = 1.0
    max_batch: int = 1
    batch_wait: float = 0.010
    accel: Acceleration = Acceleration()
    max_seconds: float = 3600.0
    max_chunk_bytes: int = MAX_CHUNK_BYTES
    default_overlap: float = 0.25
    grace: float = 30.0
    service_token: str = ""                 # TABAGENT_SERVICE_TOKEN: callers must send it ("" = open)
    reflection: bool = False                # TABAGENT_GRPC_REFLECTION=1 answers gRPC reflection

    @property
    def default_model(self) -> str:
        """The model a stream gets when its config names none."""
        return self.models[0]

    @classmethod
    def from_env(cls, model_dir: Path | None = None, offline: bool | None = None) -> SeparatorConfig:
        """Read the SEPARATOR_* variables (see the class docstring); fail fast on garbage.

        Args:
            model_dir: a `--model-dir` from the command line; wins over DEMUCS_MODEL_DIR.
            offline: True (an `--offline` flag) never downloads, whatever TABAGENT_OFFLINE says.
        """
        d = cls()
        env_dir = os.environ.get("DEMUCS_MODEL_DIR", "")
        config = cls(
            host=os.environ.get("SEPARATOR_HOST", d.host),
            port=env_int("SEPARATOR_PORT", d.port),
            metrics_port=env_int("SEPARATOR_METRICS_PORT", d.metrics_port),
            models=_models(os.environ.get("SEPARATOR_MODELS", ",".join(d.models))),
            model_dir=model_dir or (Path(env_dir) if env_dir else None),
            hub_cache=default_hub_cache(),
            fetch=FetchConfig.from_env(offline),
            device=os.environ.get("SEPARATOR_DEVICE", d.device),
            max_streams=env_int("SEPARATOR_MAX_STREAMS", d.max_streams),
            max_queue=env_int("SEPARATOR_MAX_QUEUE", d.max_queue),
            read_ahead=env_int("SEPARATOR_READ_AHEAD", d.read_ahead),
            chunk_seconds=env_float("SEPARATOR_CHUNK_SECONDS", d.chunk_seconds),
            max_batch=env_int("SEPARATOR_MAX_BATCH", d.max_batch),
            batch_wait=env_float("SEPARATOR_BATCH_WAIT_MS", d.batch_wait * 1000) / 1000,
            accel=Acceleration(
                workers=env_int("SEPARATOR_WORKERS", d.accel.workers),
                threads=env_int("SEPARATOR_THREADS", d.accel.threads),
                attention=os.environ.get("SEPARATOR_ATTENTION", d.accel.attention).strip().lower(),
                prune=env_int("SEPARATOR_PRUNE", int(d.accel.prune)) != 0,
                precision=os.environ.get("SEPARATOR_PRECISION", d.accel.precision).strip().lower(),
                compile=os.environ.get("SEPARATOR_COMPILE", d.accel.compile).strip().lower(),
            ),
            max_seconds=env_float("TABAGENT_MAX_SECONDS", d.max_seconds),
            grace=env_float("SEPARATOR_GRACE_SECONDS", d.grace),
            service_token=service_token_from_env(),
            reflection=reflection_from_env(),
        )
        config.check()
        return config

    def check(self) -> None:
        """Fail fast on values that cannot work."""
        if self.max_streams < 1 or self.max_queue < 0 or self.read_ahead < 1:
            raise SystemExit("SEPARATOR_MAX_STREAMS and SEPARATOR_READ_AHEAD must be >= 1, SEPARATOR_MAX_QUEUE >= 0")
        if not 0.05 <= self.chunk_seconds <= 4.0:
            raise SystemExit("SEPARATOR_CHUNK_SECONDS must be between 0.05 and 4")
        if self.max_batch < 1 or self.batch_wait < 0:
            raise SystemExit("SEPARATOR_MAX_BATCH must be >= 1 and SEPARATOR_BATCH_WAIT_MS >= 0")
        try:
            self.accel.check()
        except ValueError as exc:
            raise SystemExit(f"SEPARATOR_WORKERS/THREADS/ATTENTION/PRECISION/COMPILE: {exc}") from None
