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
    service_token: str = ""                 # sent to the model services (TABAGENT_SERVICE_TOKEN)
    reflection: bool = False                # TABAGENT_GRPC_REFLECTION=1 answers gRPC reflection
    failover_retries: int = 2               # restarts of a song's stage on another replica
    ready_wait: float = 300.0               # longest a gRPC song waits for the model services

    @classmethod
    def from_env(cls) -> GatewayConfig:
        """Read TABAGENT_* / *_ADDR variables; fail fast on malformed numbers."""
        d = cls()
        return cls(
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
            service_token=service_token_from_env(),
            reflection=reflection_from_env(),
            failover_retries=env_int("TABAGENT_FAILOVER_RETRIES", d.failover_retries),
            ready_wait=env_float("TABAGENT_READY_WAIT", d.ready_wait),
        )
