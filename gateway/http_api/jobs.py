"""The job routes: upload a song, follow its events (SSE), download artifacts, cancel; each user their own jobs."""

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
from gateway.events import END_TYPES, JobEvent
from gateway.http_api.errors import ERRORS
from gateway.http_api.schemas import ErrorBody, JobList, JobView, job_path, job_view
from gateway.job_queue import UPLOAD, JobManager
from gateway.keys import Principal
from gateway.options import OPTION_DOCS, parse_options
from gateway.spec import spec_from_config
from gateway.store import QUEUED, STATUSES, JobRecord, JobStore
from gateway.upload import check_length, probe, receive_multipart, receive_raw
from tabagent.errors import BadConfig, Cancelled

JOB_ID = re.compile(r"^[0-9a-f]{32}$")

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
        manager: the job queue (jobs run here or on another replica sharing the store).
        store: the job store.
        auth: the API key check; a user sees only their own jobs, an admin every job.
    """
    routes = APIRouter(tags=["jobs"])
    key = Depends(auth.require_key)
    key_or_link = Depends(auth.require_key_or_link)

    async def lookup(job_id: str, who: Principal) -> tuple[JobRecord, Any]:
        if not JOB_ID.match(job_id):
            raise _not_found(job_id)
        record, live = await manager.get(job_id)
        if record is None or not who.may_see(record.owner):
            raise _not_found(job_id)  # another user's job does not exist for this caller
        return record, live

    def view(record: JobRecord, live: Any, positions: dict[str, int] | None = None) -> JobView:
        return job_view(record, live, auth, (positions or {}).get(record.id, 0))

    async def fresh_view(record: JobRecord, live: Any) -> JobView:
        return view(record, live, await manager.positions() if record.status == QUEUED else None)

    @routes.post("/v1/jobs", status_code=202, response_model=JobView,
                 summary="Upload a song; the job is queued", openapi_extra=_UPLOAD_DOC,
                 responses={**ERRORS, 413: {"model": ErrorBody, "description": "upload or song too long"},
                            415: {"model": ErrorBody, "description": "not audio"},
                            422: {"model": ErrorBody, "description": "bad options"},
                            429: {"model": ErrorBody, "description": "busy; Retry-After says when to "
                                                                     "retry (from how fast the queue drains)"}})
    async def create_job(request: Request, who: Principal = key) -> JSONResponse:
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
        reservation = await manager.reserve()
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
            record = await manager.submit(reservation, job_id, options, filename, got.size, info, owner=who.user)
            accepted = True
        finally:
            reservation.release()
            if not accepted:
                shutil.rmtree(jobdir, ignore_errors=True)
        return JSONResponse((await fresh_view(record, None)).model_dump(mode="json"), status_code=202,
                            headers={"Location": job_path(job_id)})

    @routes.get("/v1/jobs", response_model=JobList, responses=ERRORS,
                summary="Your jobs (an admin key: everyone's), newest first")
    async def list_jobs(status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
                        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                        batch: str | None = Query(None, description="only the jobs of this batch"),
                        who: Principal = key) -> JobList:
        if status is not None and status not in STATUSES:
            raise BadConfig(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        records, total = await manager.find(status, limit, offset, None if who.admin else who.user, batch)
        positions = await manager.positions() if any(r.status == QUEUED for r in records) else {}
        return JobList(jobs=[view(r, manager.live.get(r.id), positions) for r in records], total=total,
                       limit=limit, offset=offset)

    @routes.get("/v1/jobs/{job_id}", response_model=JobView,
                responses=ERRORS, summary="A job's status, per-stage progress, note counts and artifacts")
    async def get_job(job_id: str, who: Principal = key) -> JobView:
        return await fresh_view(*await lookup(job_id, who))

    @routes.get("/v1/jobs/{job_id}/events", responses=ERRORS, response_class=StreamingResponse,
                summary="Server-Sent Events: status, progress, part, notes, video, restart (forget what the "
                        "job said so far: a gateway stopped and it starts again); ends with done, failed or "
                        "cancelled (whose data is the job). Replays from the start (or Last-Event-ID), "
                        "from any gateway replica.")
    async def job_events(job_id: str, request: Request,
                         after: int = Query(0, ge=0, description="replay events after this id"),
                         who: Principal = key_or_link) -> StreamingResponse:
        await lookup(job_id, who)
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else after

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            async for ev in manager.follow(job_id, start):
                if ev is None:
                    yield ": keepalive\n\n"
                elif ev.type in END_TYPES:
                    record, live = await manager.get(job_id)
                    data = view(record, live).model_dump(mode="json") if record is not None else ev.data
                    yield JobEvent(ev.seq, ev.type, data).sse()
                else:
                    yield ev.sse()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @routes.get("/v1/jobs/{job_id}/artifacts/{name}", responses=ERRORS, response_class=FileResponse,
                summary="Download an artifact (result.json, tab.txt, tab.gp5, tab.musicxml, notes.mid, "
                        "video.mp4, stem-*.flac); Range requests work")
    async def get_artifact(job_id: str, name: str,
                           download: bool = Query(False, description="as an attachment"),
                           who: Principal = key_or_link) -> FileResponse:
        record, _ = await lookup(job_id, who)
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

    @routes.delete("/v1/jobs/{job_id}", status_code=204,
                   responses={**ERRORS, 202: {"model": JobView, "description": "the job was cancelled"}},
                   summary="Cancel a queued or running job (202), or remove a finished one and its files (204)")
    async def delete_job(job_id: str, who: Principal = key) -> Response:
        await lookup(job_id, who)
        outcome = await manager.cancel_or_remove(job_id)
        if outcome is None:
            raise _not_found(job_id)
        if outcome == "cancelled":
            record, live = await manager.get(job_id)
            assert record is not None
            return JSONResponse(view(record, live).model_dump(mode="json"), status_code=202)
        return Response(status_code=204)

    return routes
