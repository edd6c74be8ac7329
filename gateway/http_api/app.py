"""The gateway's HTTP API (FastAPI): the app, wired from its routers and middleware.

    app = create_app(config, downstream)        # downstream: gateway.downstream.Downstream
    uvicorn.Server(uvicorn.Config(app, port=config.http_port)).serve()

Routes: the job routes (gateway.http_api.jobs), batches (batches), the tab player's
(player), health and metrics (health), the live numbers (status: `/status`), the web page,
its libraries and Swagger UI at `/docs`, all served locally (page). Every route but `/`,
`/static/*`, `/vendor/*`, `/docs`, `/openapi.json`, `/healthz`, `/readyz`, `/metrics` and
`/status` needs an API key when `TABAGENT_API_KEY` or `TABAGENT_KEYS_FILE` is set
(gateway/keys.py, gateway/auth.py; the OpenAPI document names it as the bearer scheme
`bearerAuth`, so Swagger UI's Authorize works); errors are JSON `{"error": {"type",
"message", "status"}}` with the status of tabagent.errors (errors).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gateway.auth import Auth
from gateway.config import GatewayConfig
from gateway.http_api import batches, errors, health, jobs, page, player, status
from gateway.http_api.middleware import RequestMetrics
from gateway.job_queue import JobManager
from gateway.keys import KeyRing
from gateway.store import STATUSES, JobRecord, JobStore
from tabagent.metrics import ServiceMetrics

log = logging.getLogger(__name__)

SERVICES_WAIT = 300.0   # a job waits this long for restarting model services before it fails


def create_app(config: GatewayConfig, downstream: Any, *, metrics: ServiceMetrics | None = None,
               store: JobStore | None = None, shutdown_grace: float = 0.0) -> FastAPI:
    """Build the HTTP API.

    Args:
        config: gateway settings (limits, data_dir, db_url, api_key).
        downstream: the services: a gateway.downstream.Downstream (`.stubs`, `.channels`).
        metrics: the gateway's metrics (the downstream's, or a new ServiceMetrics("gateway"), when None).
        store: the job store (from config.db_url / data_dir when None).
        shutdown_grace: seconds running jobs get to finish when the app stops.

    Returns:
        The FastAPI app; its lifespan starts and stops the job manager, and
        `app.state.stop_jobs()` stops it earlier (a drain).
    """
    # One registry for the HTTP API and the chain's stage timings (the downstream's).
    metrics = metrics or getattr(downstream, "metrics", None) or ServiceMetrics("gateway")
    store = store or JobStore.from_config(config.db_url, config.data_dir)
    keys = KeyRing.from_config(config)
    auth = Auth(config.api_key, keys=keys)
    manager = JobManager(config, downstream.stubs, store, on_finish=lambda r: _observe(metrics, r),
                         wait_ready=lambda: downstream.wait_ready(timeout=SERVICES_WAIT))
    metrics.bind_job_states(lambda: manager.counts, STATUSES)
    sampler = status.Sampler(metrics.registry, extra=lambda: {
        "worker": manager.worker, "running_here": manager.running, "slots": manager.max_running})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        if keys.enabled and not config.api_key:
            # Links are signed with a secret every replica reads from the shared store.
            auth.set_link_secret(await asyncio.to_thread(store.secret, "link-signing"))
        log.info("HTTP API ready: %d job(s) at once, backlog %d, store %s, API keys %s",
                 manager.max_running, manager.max_backlog, store.engine.url.render_as_string(hide_password=True),
                 f"required ({len(keys.users())} user(s))" if auth.enabled else "off")
        try:
            async with sampler.running():
                yield
        finally:
            await stop()

    async def stop() -> None:
        if not manager.closing:
            await manager.close(shutdown_grace)

    app = FastAPI(title="Tab Agent", version="1.0",
                  description="Song in, guitar and bass tablature and a play-along video out. "
                              "Send `Authorization: Bearer <key>` when the gateway has an API key.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.jobs = manager
    app.state.stop_jobs = stop
    app.state.metrics = metrics
    app.add_middleware(RequestMetrics, metrics=metrics)  # type: ignore[arg-type]
    errors.install(app)
    page.mount(app, auth_required=auth.enabled)
    app.include_router(health.router(downstream, store, manager, metrics))
    app.include_router(status.router(sampler))
    app.include_router(jobs.router(config, manager, store, auth))
    app.include_router(batches.router(config, manager, store, auth))
    app.include_router(player.router(manager, auth))
    return app


def _observe(metrics: ServiceMetrics, record: JobRecord) -> None:
    if record.status == "done":
        metrics.observe_stage("http_job", record.wall_seconds, record.seconds)
        metrics.add_audio(record.seconds)
