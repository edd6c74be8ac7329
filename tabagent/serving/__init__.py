"""One way to run a Tab Agent gRPC service.

    options       channel options every server and client shares; env_int/env_float
    health        grpc.health.v1: NOT_SERVING until warm, SERVING, NOT_SERVING on drain
    limits        StreamLimiter: bounded streams and queue (RESOURCE_EXHAUSTED beyond)
    streams       handler helpers: errors to status codes, the config message, read-ahead
    interceptors  the one interceptor: in-flight count, SERVER span, request metrics
    model         the WarmModel protocol (warm(), close()) and ModelInfo
    lifecycle     ServiceSpec, create_server, warm, drain, run_service

Each service's server.py holds its servicer and a ServiceSpec; everything else is here.
"""

from tabagent.serving.health import Health, require_ready
from tabagent.serving.lifecycle import (
    Companion,
    ServerSettings,
    ServiceServer,
    ServiceSpec,
    bind,
    create_server,
    drain,
    new_server,
    run_service,
    serve_until_signal,
)
from tabagent.serving.limits import StreamLimiter
from tabagent.serving.model import ModelInfo, WarmModel
from tabagent.serving.options import (
    MAX_CONNECTION_AGE_MS,
    MAX_MESSAGE_BYTES,
    channel_options,
    env_float,
    env_int,
    server_options,
)
from tabagent.serving.streams import (
    END_OF_AUDIO,
    first_message,
    grpc_stream_errors,
    read_audio_ahead,
)

__all__ = [
    "END_OF_AUDIO",
    "MAX_CONNECTION_AGE_MS",
    "MAX_MESSAGE_BYTES",
    "Companion",
    "Health",
    "ModelInfo",
    "ServerSettings",
    "ServiceServer",
    "ServiceSpec",
    "StreamLimiter",
    "WarmModel",
    "bind",
    "channel_options",
    "create_server",
    "drain",
    "env_float",
    "env_int",
    "first_message",
    "grpc_stream_errors",
    "new_server",
    "read_audio_ahead",
    "require_ready",
    "run_service",
    "serve_until_signal",
    "server_options",
]
