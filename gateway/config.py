"""Gateway settings, read once from the environment."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from tabagent.serving import env_float, env_int
from tabagent.serving.auth import reflection_from_env, service_token_from_env


@dataclass(frozen=True)
class GatewayConfig:
    """Where the services are and how much the gateway accepts.

    Addresses may name several replicas through DNS (`dns:///separator:50051` on a
    headless Service); the channel balances streams over them round-robin.
    """

    separator_addr: str = "localhost:50051"
    transcriber_addr: str = "localhost:50052"
    video_addr: str = ""                    # empty: no video service, video off
    host: str = "[::]"
    port: int = 50050
    http_port: int = 8080
    metrics_port: int = 0                   # 0 = served on the HTTP port's /metrics
    max_streams: int = 4                    # songs processed at once
    max_queue: int = 16                     # songs waiting for a slot
    max_upload_bytes: int = 512 * 1024 * 1024
    max_seconds: float = 3600.0             # longest song accepted
    stage_timeout: float = 3600.0           # deadline for downstream calls without a client deadline
    data_dir: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "tabagent-gateway"))
    db_url: str = ""                        # empty: sqlite under data_dir
    api_key: str = ""                       # empty: no auth on the HTTP API
    http_max_running: int = 2
    http_max_backlog: int = 16
    grace: float = 30.0                     # seconds running streams and HTTP jobs get on SIGTERM
    # The shared job queue (gateway/claims.py): a running job's lease, renewed by its
    # gateway's heartbeat; after it runs out another replica restarts the song, at most
    # job_max_attempts starts in all.
    job_lease_seconds: float = 30.0
    job_max_attempts: int = 3
    job_poll_seconds: float = 1.0           # how often an idle gateway looks for work others queued
    worker_name: str = ""                   # this replica in job records ("" = host name)
    keys_file: str = ""                     # per-user API keys (gateway/keys.py); "" = only api_key
    retention_days: float = 0.0             # finished jobs older than this are removed (0 = kept)
    disk_budget_bytes: int = 0              # jobs' files above this: oldest finished removed (0 = none)
    service_token: str = ""                 # sent to the model services (TABAGENT_SERVICE_TOKEN)
    reflection: bool = False                # TABAGENT_GRPC_REFLECTION=1 answers gRPC reflection
    failover_retries: int = 2               # restarts of a song's stage on another replica
    ready_wait: float = 300.0               # longest a gRPC song waits for the model services

    @classmethod
    def from_env(cls) -> GatewayConfig:
        """Read TABAGENT_* / *_ADDR variables; fail fast on malformed numbers."""
        d = cls()
        config = cls(
            separator_addr=os.environ.get("SEPARATOR_ADDR", d.separator_addr),
            transcriber_addr=os.environ.get("TRANSCRIBER_ADDR", d.transcriber_addr),
            video_addr=os.environ.get("VIDEO_ADDR", d.video_addr),
            host=os.environ.get("GATEWAY_HOST", d.host),
            port=env_int("GATEWAY_PORT", d.port),
            http_port=env_int("GATEWAY_HTTP_PORT", d.http_port),
            metrics_port=env_int("GATEWAY_METRICS_PORT", d.metrics_port),
            max_streams=env_int("GATEWAY_MAX_STREAMS", d.max_streams),
            max_queue=env_int("GATEWAY_MAX_QUEUE", d.max_queue),
            max_upload_bytes=env_int("TABAGENT_MAX_UPLOAD_BYTES", d.max_upload_bytes),
            max_seconds=env_float("TABAGENT_MAX_SECONDS", d.max_seconds),
            stage_timeout=env_float("TABAGENT_STAGE_TIMEOUT", d.stage_timeout),
            data_dir=os.environ.get("TABAGENT_DATA_DIR", d.data_dir),
            db_url=os.environ.get("TABAGENT_DB_URL", d.db_url),
            api_key=os.environ.get("TABAGENT_API_KEY", d.api_key),
            http_max_running=env_int("TABAGENT_HTTP_MAX_RUNNING", d.http_max_running),
            http_max_backlog=env_int("TABAGENT_HTTP_MAX_BACKLOG", d.http_max_backlog),
            grace=env_float("GATEWAY_GRACE_SECONDS", d.grace),
            job_lease_seconds=env_float("TABAGENT_JOB_LEASE_SECONDS", d.job_lease_seconds),
            job_max_attempts=env_int("TABAGENT_JOB_MAX_ATTEMPTS", d.job_max_attempts),
            job_poll_seconds=env_float("TABAGENT_JOB_POLL_SECONDS", d.job_poll_seconds),
            worker_name=os.environ.get("POD_NAME", d.worker_name),
            keys_file=os.environ.get("TABAGENT_KEYS_FILE", d.keys_file),
            retention_days=env_float("TABAGENT_RETENTION_DAYS", d.retention_days),
            disk_budget_bytes=env_size("TABAGENT_DISK_BUDGET", d.disk_budget_bytes),
            service_token=service_token_from_env(),
            reflection=reflection_from_env(),
            failover_retries=env_int("TABAGENT_FAILOVER_RETRIES", d.failover_retries),
            ready_wait=env_float("TABAGENT_READY_WAIT", d.ready_wait),
        )
        config.check()
        return config

    def check(self) -> None:
        """Fail fast on settings that cannot work."""
        if self.job_lease_seconds < 1 or self.job_max_attempts < 1 or self.job_poll_seconds <= 0:
            raise SystemExit("TABAGENT_JOB_LEASE_SECONDS must be >= 1, TABAGENT_JOB_MAX_ATTEMPTS >= 1 and "
                             "TABAGENT_JOB_POLL_SECONDS > 0")
        if self.retention_days < 0 or self.disk_budget_bytes < 0:
            raise SystemExit("TABAGENT_RETENTION_DAYS and TABAGENT_DISK_BUDGET must be >= 0")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
          "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from "5000000", "500M", "50GiB", "1.5T" (k/M/G/T powers of 1000, Ki/Mi/Gi/Ti of 1024).

    Raises:
        ValueError: not a size.
    """
    raw = text.strip().replace(" ", "")
    number = raw.rstrip("bBiIkKmMgGtT")
    unit = raw[len(number):].lower()
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {text!r}")
    value = float(number) * _UNITS[unit]
    if value < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(value)


def env_size(name: str, default: int) -> int:
    """Read a size setting (see `parse_size`) from the environment, failing fast on garbage."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return parse_size(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a size (e.g. 50GiB, 500M, 1000000)") from None
