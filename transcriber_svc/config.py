"""Transcriber settings, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tabagent.audio import MAX_CHUNK_BYTES
from tabagent.serving import env_float, env_int
from tabagent.serving.auth import reflection_from_env, service_token_from_env


@dataclass(frozen=True)
class TranscriberConfig:
    """How the transcriber runs.

    Environment (defaults in brackets):
        TRANSCRIBER_HOST [::], TRANSCRIBER_PORT [50052], TRANSCRIBER_METRICS_PORT [9102, 0 = off];
        TRANSCRIBER_THREADS [1]: onnxruntime intra-op threads (0 = one per core);
        TRANSCRIBER_DEVICE [auto]: auto, cpu, cuda (needs onnxruntime-gpu);
        TRANSCRIBER_MAX_STREAMS [4], TRANSCRIBER_MAX_QUEUE [16]: concurrent and waiting streams;
        TRANSCRIBER_READ_AHEAD [8]: audio chunks buffered per stream before flow control;
        TRANSCRIBER_MAX_BATCH [4], TRANSCRIBER_BATCH_WAIT_MS [5]: dynamic batching of
        model windows across streams (1 = off);
        TRANSCRIBER_MAX_BUFFER_SECONDS [20]: most frames a stream's decoder holds before
        it forces a cut (see transcriber_svc.decoder);
        TRANSCRIBER_EARLY_SECONDS [20]: for this long from a stream's start, notes leave
        early (the decoder forces cuts at 8 s of buffer, the fingerer looks 2 s ahead), so
        the first tab events come seconds into a song; 0 = off;
        TRANSCRIBER_GRACE_SECONDS [30]: drain time on shutdown;
        TABAGENT_MAX_SECONDS [3600]: longest audio accepted per stream.

    The thread and batch defaults were chosen with bench/bench_concurrency.py on a 2-core
    CPU (docs/PERFORMANCE.md): one intra-op thread beat one per core for one song and for
    four, and batching the windows of concurrent streams (bit-identical with one thread)
    added throughput at four songs at no cost for one. Give a pod with several cores
    TRANSCRIBER_THREADS equal to its CPU limit (the k8s manifests do).
    """

    host: str = "[::]"
    port: int = 50052
    metrics_port: int = 9102
    threads: int = 1
    device: str = "auto"
    max_streams: int = 4
    max_queue: int = 16
    read_ahead: int = 8
    max_batch: int = 4
    batch_wait: float = 0.005
    max_buffer_seconds: float = 20.0
    early_seconds: float = 20.0
    max_seconds: float = 3600.0
    max_chunk_bytes: int = MAX_CHUNK_BYTES
    grace: float = 30.0
    service_token: str = ""                 # TABAGENT_SERVICE_TOKEN: callers must send it ("" = open)
    reflection: bool = False                # TABAGENT_GRPC_REFLECTION=1 answers gRPC reflection

    @classmethod
    def from_env(cls) -> TranscriberConfig:
        """Read the TRANSCRIBER_* variables (see the class docstring); fail fast on garbage."""
        d = cls()
        config = cls(
            host=os.environ.get("TRANSCRIBER_HOST", d.host),
            port=env_int("TRANSCRIBER_PORT", d.port),
            metrics_port=env_int("TRANSCRIBER_METRICS_PORT", d.metrics_port),
            threads=env_int("TRANSCRIBER_THREADS", d.threads),
            device=os.environ.get("TRANSCRIBER_DEVICE", d.device),
            max_streams=env_int("TRANSCRIBER_MAX_STREAMS", d.max_streams),
            max_queue=env_int("TRANSCRIBER_MAX_QUEUE", d.max_queue),
            read_ahead=env_int("TRANSCRIBER_READ_AHEAD", d.read_ahead),
            max_batch=env_int("TRANSCRIBER_MAX_BATCH", d.max_batch),
            batch_wait=env_float("TRANSCRIBER_BATCH_WAIT_MS", d.batch_wait * 1000) / 1000,
            max_buffer_seconds=env_float("TRANSCRIBER_MAX_BUFFER_SECONDS", d.max_buffer_seconds),
            early_seconds=env_float("TRANSCRIBER_EARLY_SECONDS", d.early_seconds),
            max_seconds=env_float("TABAGENT_MAX_SECONDS", d.max_seconds),
            grace=env_float("TRANSCRIBER_GRACE_SECONDS", d.grace),
            service_token=service_token_from_env(),
            reflection=reflection_from_env(),
        )
        config.check()
        return config

    def check(self) -> None:
        """Fail fast on values that cannot work."""
        if self.max_streams < 1 or self.max_queue < 0 or self.read_ahead < 1:
            raise SystemExit(
                "TRANSCRIBER_MAX_STREAMS and TRANSCRIBER_READ_AHEAD must be >= 1, TRANSCRIBER_MAX_QUEUE >= 0"
            )
        if self.threads < 0:
            raise SystemExit("TRANSCRIBER_THREADS must be >= 0")
        if self.max_batch < 1 or self.batch_wait < 0:
            raise SystemExit("TRANSCRIBER_MAX_BATCH must be >= 1 and TRANSCRIBER_BATCH_WAIT_MS >= 0")
        if self.early_seconds < 0:
            raise SystemExit("TRANSCRIBER_EARLY_SECONDS must be >= 0")
        if not 8.0 <= self.max_buffer_seconds <= 600.0:
            raise SystemExit("TRANSCRIBER_MAX_BUFFER_SECONDS must be between 8 and 600")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SystemExit(f"TRANSCRIBER_DEVICE={self.device!r}: use auto, cpu or cuda")
