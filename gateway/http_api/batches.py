"""The batch routes: several songs in one upload, one status for all of them, a link to each job.

    POST   /v1/batches         multipart form, several `file` parts (options apply to every song)
    GET    /v1/batches/{id}    the batch's status, counts per status, and each job with its links
    DELETE /v1/batches/{id}    cancel its unfinished jobs and remove the finished ones

Each song becomes an ordinary job (GET /v1/jobs/{id}, its events, its artifacts) that
carries the batch's id; the batch is all or nothing at upload time: a file that is not
audio, or a queue without room for every song, refuses the whole batch.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gateway.auth import Auth
from gateway.config import GatewayConfig
from gateway.http_api.errors import ERRORS
from gateway.http_api.schemas import (
    BatchJob,
    BatchView,
    ErrorBody,
    JobError,
    batch_path,
    batch_status,
    job_path,
)
from gateway.job_queue import UPLOAD, JobManager
from gateway.keys import Principal
from gateway.options import parse_options
from gateway.spec import spec_from_config
from gateway.store import STATUSES, BatchRecord, JobRecord, JobStore, now
from gateway.upload import AudioInfo, check_length, probe, receive_multipart
from tabagent.errors import BadConfig, Cancelled, InvalidInput

BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_BATCH_FILES = 100


def router(config: GatewayConfig, manager: JobManager, store: JobStore, auth: Auth) -> APIRouter:
    """The batch routes (same keys and ownership rules as the job routes)."""
    routes = APIRouter(tags=["batches"])
    key = Depends(auth.require_key)

    async def lookup(batch_id: str, who: Principal) -> BatchRecord:
        batch = await asyncio.to_thread(store.get_batch, batch_id) if BATCH_ID.match(batch_id) else None
        if batch is None or not who.may_see(batch.owner):
            raise HTTPException(404, f"no batch {batch_id!r}")
        return batch

    async def batch_view(batch: BatchRecord) -> BatchView:
        records, _ = await manager.find(None, MAX_BATCH_FILES, 0, None, batch.id)
        records.sort(key=lambda r: (r.created_at, r.id))
        counts = {s: 0 for s in STATUSES} | dict(Counter(r.status for r in records))
        return BatchView(id=batch.id, status=batch_status(counts), created_at=batch.created_at, title=batch.title,
                         owner=batch.owner, total=len(records), counts=counts,
                         jobs=[_batch_job(r, auth) for r in records], links={"self": batch_path(batch.id)})

    @routes.post("/v1/batches", status_code=202, response_model=BatchView,
                 summary="Upload several songs at once (a multipart form with one `file` part per song; "
                         "options as fields apply to all)",
                 responses={**ERRORS, 413: {"model": ErrorBody, "description": "a file or song too long"},
                            415: {"model": ErrorBody, "description": "a file is not audio"},
                            422: {"model": ErrorBody, "description": "bad options, or no file"},
                            429: {"model": ErrorBody, "description": "no room in the queue for every song"}})
    async def create_batch(request: Request, who: Principal = key) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise BadConfig("send a batch as multipart/form-data with one 'file' part per song")
        limit = config.max_upload_bytes
        check_length(request.headers.get("content-length"), MAX_BATCH_FILES * limit, True)
        query: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            query.setdefault(name, []).append(value)
        parse_options(query)
        (await manager.reserve()).release()  # refuse at once when the queue is already full
        dirs: list[tuple[str, Path]] = []

        def next_upload() -> Path:
            job_id, jobdir = manager.new_job_dir()
            dirs.append((job_id, jobdir))
            return jobdir / UPLOAD

        accepted = False
        try:
            try:
                got = await receive_multipart(request.stream(), ctype, next_upload, limit, max_files=MAX_BATCH_FILES)
            except ClientDisconnect:
                raise Cancelled("the client went away during the upload") from None
            if not got.files:
                raise BadConfig("no file: send each song in a multipart field named 'file'")
            fields = {**query, **got.fields}
            title = (fields.pop("title", None) or [""])[-1].strip()[:255]
            options = parse_options(fields)
            infos: list[AudioInfo] = []
            for (job_id, _), (path, filename, _) in zip(dirs, got.files, strict=True):
                spec_from_config(options.to_config(filename), job_id)
                try:
                    infos.append(await asyncio.to_thread(probe, path, config.max_seconds))
                except InvalidInput as exc:
                    exc.message = f"{filename or 'a file'}: {exc.message}"
                    raise
            reservation = await manager.reserve(len(got.files))
            batch = BatchRecord(uuid.uuid4().hex, who.user, now(), title, len(got.files))
            await asyncio.to_thread(store.add_batch, batch)
            try:
                for (job_id, _), (_, filename, size), info in zip(dirs, got.files, infos, strict=True):
                    await manager.submit(None, job_id, options, filename, size, info, owner=who.user,
                                         batch_id=batch.id)
            finally:
                reservation.release()
            accepted = True
        finally:
            if not accepted:
                for _, jobdir in dirs:
                    shutil.rmtree(jobdir, ignore_errors=True)
        return JSONResponse((await batch_view(batch)).model_dump(mode="json"), status_code=202,
                            headers={"Location": batch_path(batch.id)})

    @routes.get("/v1/batches/{batch_id}", response_model=BatchView, responses=ERRORS,
                summary="A batch: one status, the count of jobs per status, and each job with its links")
    async def get_batch(batch_id: str, who: Principal = key) -> BatchView:
        return await batch_view(await lookup(batch_id, who))

    @routes.delete("/v1/batches/{batch_id}", status_code=204, responses=ERRORS,
                   summary="Cancel the batch's unfinished jobs and remove it with every finished job's files")
    async def delete_batch(batch_id: str, who: Principal = key) -> Response:
        batch = await lookup(batch_id, who)
        records, _ = await manager.find(None, MAX_BATCH_FILES, 0, None, batch.id)
        for record in records:
            if await manager.cancel_or_remove(record.id) == "cancelled":
                await manager.cancel_or_remove(record.id)
        await asyncio.to_thread(store.delete_batch, batch.id)
        return Response(status_code=204)

    return routes


def _batch_job(record: JobRecord, auth: Auth) -> BatchJob:
    base = job_path(record.id)
    links: dict[str, Any] = {"self": base, "events": auth.link(f"{base}/events")}
    for a in record.artifacts:
        links[a["name"]] = auth.link(f"{base}/artifacts/{a['name']}")
    return BatchJob(id=record.id, filename=record.filename, status=record.status, links=links,
                    error=JobError(message=record.error, status=record.error_status) if record.error else None)
