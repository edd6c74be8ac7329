"""Probes and scrapes: `/healthz` (up), `/readyz` (every dependency SERVING), `/metrics`."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.http_api.schemas import Health
from gateway.job_queue import JobManager
from gateway.store import JobStore
from tabagent.metrics import ServiceMetrics

READY_TIMEOUT = 2.0     # a dependency that does not answer in this long is not ready


async def service_status(channel: grpc.aio.Channel) -> str:
    """A model service's overall health status name, or UNREACHABLE (and why)."""
    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READY_TIMEOUT)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.RpcError as exc:
        return f"UNREACHABLE ({exc.code().name if hasattr(exc, 'code') else 'error'})"


def router(downstream: Any, store: JobStore, manager: JobManager, metrics: ServiceMetrics) -> APIRouter:
    """The health routes.

    Args:
        downstream: the model services (`.channels`, gateway.downstream.Downstream).
        store: the job store (its database must answer).
        manager: the job queue (it must be running).
        metrics: what `/metrics` serves.
    """
    routes = APIRouter(tags=["health"])

    @routes.get("/healthz", response_model=Health, summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @routes.get("/readyz", response_model=Health, responses={503: {"model": Health}},
                summary="Jobs are accepted and every downstream service is SERVING")
    async def readyz() -> JSONResponse:
        services = dict(zip(downstream.channels, await asyncio.gather(
            *(service_status(c) for c in downstream.channels.values())), strict=True))
        try:
            await asyncio.wait_for(asyncio.to_thread(store.ping), READY_TIMEOUT)
            services["database"] = "SERVING"
        except Exception as exc:  # any driver error means "not ready", with its name
            services["database"] = f"UNREACHABLE ({type(exc).__name__})"
        services["jobs"] = "SERVING" if manager.started and not manager.closing else "NOT_SERVING"
        ready = all(v == "SERVING" for v in services.values())
        return JSONResponse(Health(status="ready" if ready else "not ready", services=services).model_dump(),
                            status_code=200 if ready else 503)

    @routes.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    return routes
