"""ASGI middleware of the HTTP API: every request counted and timed by route and status."""

from __future__ import annotations

import time
from typing import Any

from tabagent.metrics import ServiceMetrics

# Probes and scrapes would drown the request counters.
UNTRACKED = ("/metrics", "/healthz", "/readyz")


class RequestMetrics:
    """Counts and times every HTTP request by route template and status (`tabagent_requests_total`)."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if route not in UNTRACKED:
                self.metrics.observe_request(f"{scope['method']} {route}", str(status[0]),
                                             time.perf_counter() - started)
