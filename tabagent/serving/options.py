"""Channel options every server and client shares, and settings read from the environment."""

from __future__ import annotations

import os
from typing import Any

# Messages on the wire stay far below this (about 1 s of audio, or 1 MiB of file bytes);
# anything larger is refused by gRPC itself with RESOURCE_EXHAUSTED before it is parsed.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Clients balance streams over the replicas DNS named when they connected (headless
# Services); a GOAWAY after this age makes them re-resolve and reach replicas the HPA
# added. No max_connection_age_grace: streams running on an old connection are never cut.
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000


def env_int(name: str, default: int) -> int:
    """Read an integer setting from the environment, failing fast on garbage."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    """Read a float setting from the environment, failing fast on garbage."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a number") from exc


def server_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Channel arguments every server and client uses."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, Any]]:
    """Client channel arguments: the server's plus round-robin over resolved addresses."""
    return server_options(max_message_bytes) + [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.enable_retries", 0),
    ]
