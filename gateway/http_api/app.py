"""The gateway's HTTP API (FastAPI): jobs, their events (SSE) and artifacts, health, metrics, the web page.

    app = create_app(config, downstream)        # downstream: gateway.server.Downstream
    uvicorn.Server(uvicorn.Config(app, port=config.http_port)).serve()

Every route but `/`, `/static/*`, `/healthz`, `/readyz` and `/metrics` needs the API key
when `TABAGENT_API_KEY` is set (see gateway/auth.py); errors are JSON
`{"error": {"type", "message", "status"}}` with the status of tabagent.errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gateway.auth import Auth
from gateway.config import GatewayConfig
from gateway.events import END_TYPES, KEEPALIVE_SECONDS, JobEvent
from gateway.http_api.schemas import ErrorBody, Health, JobList, JobView, job_path, job_view
from gateway.job_queue import UPLOAD, Busy, JobManager
from gateway.options import OPTION_DOCS, parse_options
from gateway.spec import spec_from_config
from gateway.store import STATUSES, JobRecord, JobStore
from gateway.upload import check_length, probe, receive_multipart, receive_raw
from tabagent.errors import BadConfig, Cancelled, NotReady, TabAgentError
from tabagent.metrics import ServiceMetrics

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
READY_TIMEOUT = 2.0
POLL_SECONDS = 1.0      # how often SSE re-reads a job another process runs
SERVICES_WAIT = 300.0   # a job waits this long for restarting model services before it fails
UNTRACKED = ("/metrics", "/healthz", "/readyz")

_UPLOAD_DOC: dict[str, Any] = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "description": doc,
         "schema": {"type": "array", "items": {"type": "string"}} if name in ("tuning", "capo")
         else {"type": "string"}}
        for name, doc in OPTION_DOCS.items()
    ],
    "requestBody": {
        "required": True,
        "description": "The song: a multipart form with the file in `file` (options may be form fields "
                       "too), or the file itself as the raw body. Any format FFmpeg reads; the content "
                       "decides the format, never the name.",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"},
                               **{n: {"type": "string", "description": d} for n, d in OPTION_DOCS.items()
                                  if n != "filename"}},
            }},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "the API key is missing or wrong"), (404, "no such job"),
    )
}


def _error(status: int, message: str, type_: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    name = type_ or HTTPStatus(status).phrase.replace(" ", "")
    return JSONResponse({"error": {"type": name, "message": message, "status": status}},
                        status_code=status, headers=headers)


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job {job_id!r}")


class _RequestMetrics:
    """Counts and times every HTTP request by route template and status (ASGI middleware)."""

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


async def _service_status(channel: grpc.aio.Channel) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        resp = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READY_TIMEOUT)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.RpcError as exc:
        return f"UNREACHABLE ({exc.code().name if hasattr(exc, 'code') else 'error'})"


def create_app(config: GatewayConfig, downstream: Any, *, metrics: ServiceMetrics | None = None,
               store: JobStore | None = None, shutdown_grace: float = 0.0) -> FastAPI:
    """Build the HTTP API.

    Args:
        config: gateway settings (limits, data_dir, db_url, api_key).
        downstream: the services: a gateway.server.Downstream (`.stubs`, `.channels`).
        metrics: the gateway's metrics (a new ServiceMetrics("gateway") when None).
        store: the job store (from config.db_url / data_dir when None).
        shutdown_grace: seconds running jobs get to finish when the app stops.

    Returns:
        The FastAPI app; its lifespan starts and stops the job manager.
    """
    metrics = metrics or ServiceMetrics("gateway")
    store = store or JobStore.from_config(config.db_url, config.data_dir)
    auth = Auth(config.api_key)
    manager = JobManager(config, downstream.stubs, store, on_finish=lambda r: _observe(metrics, r),
                         wait_ready=lambda: downstream.wait_ready(timeout=SERVICES_WAIT))
    gauge = _jobs_gauge(metrics)
    gauge.labels(metrics.service, "queued").set_function(lambda: manager.queued)
    gauge.labels(metrics.service, "running").set_function(lambda: manager.running)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        log.info("HTTP API ready: %d job(s) at once, backlog %d, store %s, API key %s",
                 manager.max_running, manager.max_backlog, store.engine.url.render_as_string(hide_password=True),
                 "required" if auth.enabled else "off")
        try:
            yield
        finally:
            await stop()

    async def stop() -> None:
        if not manager.closing:
            await manager.close(shutdown_grace)

    app = FastAPI(title="Tab Agent", version="1.0",
                  description="Song in, guitar and bass tablature and a play-along video out. "
                              "Send `Authorization: Bearer <key>` when the gateway has an API key.",
                  lifespan=lifespan)
    app.state.jobs = manager
    app.state.stop_jobs = stop
    app.state.metrics = metrics
    app.add_middleware(_RequestMetrics, metrics=metrics)  # type: ignore[arg-type]
    key = Depends(auth.require_key)
    key_or_link = Depends(auth.require_key_or_link)

    @app.exception_handler(TabAgentError)
    async def tabagent_error(_: Request, exc: TabAgentError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        if isinstance(exc, NotReady):
            headers = {"Retry-After": "5"}
        return _error(exc.http_status, exc.message, type(exc).__name__, headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _error(422, problems, "BadConfig")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed unexpectedly", request.method, request.url.path)
        return _error(500, f"the gateway failed unexpectedly ({type(exc).__name__}); the error is logged",
                      "InternalError")

    # -- the page, health, metrics ------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process is up")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}},
             summary="Jobs are accepted and every downstream service is SERVING")
    async def readyz() -> JSONResponse:
        services = dict(zip(downstream.channels, await asyncio.gather(
            *(_service_status(c) for c in downstream.channels.values())), strict=True))
        try:
            await asyncio.wait_for(asyncio.to_thread(store.ping), READY_TIMEOUT)
            services["database"] = "SERVING"
        except Exception as exc:  # any driver error means "not ready", with its name
            services["database"] = f"UNREACHABLE ({type(exc).__name__})"
        services["jobs"] = "SERVING" if manager.started and not manager.closing else "NOT_SERVING"
        ready = all(v == "SERVING" for v in services.values())
        return JSONResponse(Health(status="ready" if ready else "not ready", services=services).model_dump(),
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    # -- jobs ---------------------------------------------------------------------------

    async def lookup(job_id: str) -> tuple[JobRecord, Any]:
        if not JOB_ID.match(job_id):
            raise _not_found(job_id)
        record, live = await manager.get(job_id)
        if record is None:
            raise _not_found(job_id)
        return record, live

    def view(record: JobRecord, live: Any) -> JobView:
        return job_view(record, live, auth, manager.position(record.id))

    @app.post("/v1/jobs", status_code=202, response_model=JobView, dependencies=[key], tags=["jobs"],
              summary="Upload a song; the job is queued", openapi_extra=_UPLOAD_DOC,
              responses={**_ERRORS, 413: {"model": ErrorBody, "description": "upload or song too long"},
                         415: {"model": ErrorBody, "description": "not audio"},
                         422: {"model": ErrorBody, "description": "bad options"},
                         429: {"model": ErrorBody, "description": "busy; see Retry-After"}})
    async def create_job(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        multipart = ctype.lower().startswith("multipart/form-data")
        limit = config.max_upload_bytes
        check_length(request.headers.get("content-length"), limit, multipart)
        query: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name, []).append(value)
        if ctype.lower().startswith("application/x-www-form-urlencoded"):
            raise BadConfig("no file: a url-encoded form cannot carry one; send multipart/form-data with "
                            "the song in 'file', or the song as the raw body")
        if not multipart:
            parse_options(query)  # refuse bad options before reading a raw body
        reservation = manager.reserve()
        job_id, jobdir = manager.new_job_dir()
        accepted = False
        try:
            upload = jobdir / UPLOAD
            try:
                if multipart:
                    got = await receive_multipart(request.stream(), ctype, upload, limit)
                else:
                    got = await receive_raw(request.stream(), upload, limit)
            except ClientDisconnect:
                raise Cancelled("the client went away during the upload") from None
            if not got.got_file:
                raise BadConfig("no file: send the song in the multipart field 'file' or as the raw body")
            fields = {**query, **got.fields}
            options = parse_options(fields)
            filename = Path(got.filename or (fields.get("filename") or [""])[-1]).name
            spec_from_config(options.to_config(filename), job_id)
            info = await asyncio.to_thread(probe, upload, config.max_seconds)
            live = await manager.submit(reservation, job_id, options, filename, got.size, info)
            accepted = True
        finally:
            reservation.release()
            if not accepted:
                shutil.rmtree(jobdir, ignore_errors=True)
        return JSONResponse(view(live.record, live).model_dump(mode="json"), status_code=202,
                            headers={"Location": job_path(job_id)})

    @app.get("/v1/jobs", response_model=JobList, dependencies=[key], tags=["jobs"], responses=_ERRORS,
             summary="Jobs, newest first")
    async def list_jobs(status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
                        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> JobList:
        if status is not None and status not in STATUSES:
            raise BadConfig(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        records, total = await manager.find(status, limit, offset)
        return JobList(jobs=[view(r, manager.live.get(r.id)) for r in records], total=total,
                       limit=limit, offset=offset)

    @app.get("/v1/jobs/{job_id}", response_model=JobView, dependencies=[key], tags=["jobs"],
             responses=_ERRORS, summary="A job's status, per-stage progress, note counts and artifacts")
    async def get_job(job_id: str) -> JobView:
        return view(*await lookup(job_id))

    @app.get("/v1/jobs/{job_id}/events", dependencies=[key_or_link], tags=["jobs"], responses=_ERRORS,
             response_class=StreamingResponse,
             summary="Server-Sent Events: status, progress, part, notes, video; ends with done, failed "
                     "or cancelled (whose data is the job). Replays from the start (or Last-Event-ID).")
    async def job_events(job_id: str, request: Request,
                         after: int = Query(0, ge=0, description="replay events after this id")) -> StreamingResponse:
        record, live = await lookup(job_id)
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else after

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            if live is None:  # finished before this process started (or run by another process)
                async for ev in _record_events(record):
                    yield ev.sse() if ev is not None else ": keepalive\n\n"
                return
            async for ev in live.log.follow(start):
                if ev is None:
                    yield ": keepalive\n\n"
                elif ev.type in END_TYPES:
                    yield JobEvent(ev.seq, ev.type, view(live.record, live).model_dump(mode="json")).sse()
                else:
                    yield ev.sse()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _record_events(record: JobRecord) -> AsyncIterator[JobEvent | None]:
        """Events of a job this process holds no log of: its status as the store has it,
        followed until it ends (another gateway sharing the database may be running it)."""
        seq, last, idle = 0, "", 0.0
        while True:
            if record.status != last:
                seq += 1
                last = record.status
                yield JobEvent(seq, "status", {"status": record.status})
            if record.finished:
                yield JobEvent(seq + 1, record.status, view(record, None).model_dump(mode="json"))
                return
            await asyncio.sleep(POLL_SECONDS)
            idle += POLL_SECONDS
            if idle >= KEEPALIVE_SECONDS:
                idle = 0.0
                yield None
            fresh = await asyncio.to_thread(store.get, record.id)
            if fresh is None:
                return
            record = fresh

    @app.get("/v1/jobs/{job_id}/artifacts/{name}", dependencies=[key_or_link], tags=["jobs"],
             responses=_ERRORS, response_class=FileResponse,
             summary="Download an artifact (result.json, tab.txt, tab.gp5, tab.musicxml, notes.mid, "
                     "video.mp4, stem-*.flac); Range requests work")
    async def get_artifact(job_id: str, name: str,
                           download: bool = Query(False, description="as an attachment")) -> FileResponse:
        record, _ = await lookup(job_id)
        entry = record.artifact(name)
        if entry is None:
            names = ", ".join(a["name"] for a in record.artifacts) or "none yet"
            raise HTTPException(404, f"job {record.id} has no artifact {name!r} (it has: {names})")
        # The path comes from the record the gateway wrote, never from the request.
        folder = manager.job_dir(record.id).resolve()
        path = (folder / entry["path"]).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise HTTPException(410, f"the file of artifact {entry['name']!r} is gone")
        return FileResponse(path, media_type=entry["content_type"], filename=entry["name"],
                            content_disposition_type="attachment" if download else "inline")

    @app.delete("/v1/jobs/{job_id}", dependencies=[key], tags=["jobs"], status_code=204,
                responses={**_ERRORS, 202: {"model": JobView, "description": "the job was cancelled"}},
                summary="Cancel a queued or running job (202), or remove a finished one and its files (204)")
    async def delete_job(job_id: str) -> Response:
        await lookup(job_id)
        outcome = await manager.cancel_or_remove(job_id)
        if outcome is None:
            raise _not_found(job_id)
        if outcome == "cancelled":
            record, live = await manager.get(job_id)
            assert record is not None
            return JSONResponse(view(record, live).model_dump(mode="json"), status_code=202)
        return Response(status_code=204)

    return app


def _jobs_gauge(metrics: ServiceMetrics) -> Any:
    """`tabagent_http_jobs{state}`: HTTP jobs queued and running (bound by create_app)."""
    from prometheus_client import Gauge

    try:
        return Gauge("tabagent_http_jobs", "HTTP jobs by state (queued, running).", ["service", "state"],
                     registry=metrics.registry)
    except ValueError:  # already registered by an earlier app on this registry
        return metrics.registry._names_to_collectors["tabagent_http_jobs"]  # type: ignore[attr-defined]


def _observe(metrics: ServiceMetrics, record: JobRecord) -> None:
    if record.status == "done":
        metrics.observe_stage("http_job", record.wall_seconds, record.seconds)
        metrics.add_audio(record.seconds)
