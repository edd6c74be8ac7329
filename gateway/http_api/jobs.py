"""The job routes: upload a song, follow its events (SSE), download artifacts, cancel."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gateway.artifacts import content_disposition, download_name
from gateway.auth import Auth
from gateway.config import GatewayConfig
from gateway.events import END_TYPES, KEEPALIVE_SECONDS, JobEvent
from gateway.http_api.errors import ERRORS
from gateway.http_api.schemas import ErrorBody, JobList, JobView, job_path, job_view
from gateway.job_queue import UPLOAD, JobManager
from gateway.options import OPTION_DOCS, parse_options
from gateway.spec import spec_from_config
from gateway.store import STATUSES, JobRecord, JobStore
from gateway.upload import check_length, probe, receive_multipart, receive_raw
from tabagent.errors import BadConfig, Cancelled

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
POLL_SECONDS = 1.0      # how often SSE re-reads a job another process runs

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


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job {job_id!r}")


def router(config: GatewayConfig, manager: JobManager, store: JobStore, auth: Auth) -> APIRouter:
    """The job routes.

    Args:
        config: limits (upload size, song length).
        manager: the job queue.
        store: the job store (jobs another gateway process runs are read from it).
        auth: the API key check.
    """
    routes = APIRouter(tags=["jobs"])
    key = Depends(auth.require_key)
    key_or_link = Depends(auth.require_key_or_link)

    async def lookup(job_id: str) -> tuple[JobRecord, Any]:
        if not JOB_ID.match(job_id):
            raise _not_found(job_id)
        record, live = await manager.get(job_id)
        if record is None:
            raise _not_found(job_id)
        return record, live

    def view(record: JobRecord, live: Any) -> JobView:
        return job_view(record, live, auth, manager.position(record.id))

    @routes.post("/v1/jobs", status_code=202, response_model=JobView, dependencies=[key],
                 summary="Upload a song; the job is queued", openapi_extra=_UPLOAD_DOC,
                 responses={**ERRORS, 413: {"model": ErrorBody, "description": "upload or song too long"},
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

    @routes.get("/v1/jobs", response_model=JobList, dependencies=[key], responses=ERRORS,
                summary="Jobs, newest first")
    async def list_jobs(status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
                        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> JobList:
        if status is not None and status not in STATUSES:
            raise BadConfig(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        records, total = await manager.find(status, limit, offset)
        return JobList(jobs=[view(r, manager.live.get(r.id)) for r in records], total=total,
                       limit=limit, offset=offset)

    @routes.get("/v1/jobs/{job_id}", response_model=JobView, dependencies=[key],
                responses=ERRORS, summary="A job's status, per-stage progress, note counts and artifacts")
    async def get_job(job_id: str) -> JobView:
        return view(*await lookup(job_id))

    @routes.get("/v1/jobs/{job_id}/events", dependencies=[key_or_link], responses=ERRORS,
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
                async for ev in record_events(record):
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

    async def record_events(record: JobRecord) -> AsyncIterator[JobEvent | None]:
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

    @routes.get("/v1/jobs/{job_id}/artifacts/{name}", dependencies=[key_or_link],
                responses=ERRORS, response_class=FileResponse,
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
        # Saved as "<title> - tab.gp5" in any script: an ASCII name plus RFC 5987's filename*.
        disposition = content_disposition("attachment" if download else "inline",
                                          download_name(record.title, entry["name"]))
        return FileResponse(path, media_type=entry["content_type"],
                            headers={"Content-Disposition": disposition})

    @routes.delete("/v1/jobs/{job_id}", dependencies=[key], status_code=204,
                   responses={**ERRORS, 202: {"model": JobView, "description": "the job was cancelled"}},
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

    return routes
