"""The player routes: what the page's tab player loads for a job, running or done, and its audio.

    GET /v1/jobs/{id}/player   tab.gp5 (base64) with the beats that tie it to the recording,
                               chords, backing tracks and the audio it can play (links)
    GET /v1/jobs/{id}/source   the uploaded song while the job runs (afterwards: original.flac)
"""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from gateway.auth import Auth
from gateway.backing import ORIGINAL
from gateway.draft import DraftCache, from_artifacts
from gateway.http_api.errors import ERRORS
from gateway.http_api.jobs import JOB_ID
from gateway.http_api.schemas import job_view
from gateway.job_queue import ARTIFACTS, UPLOAD, JobManager
from gateway.keys import Principal
from gateway.store import DONE, RUNNING, JobRecord

PLAYER_DOC = ("What the page's tab player loads: `gp5` (tab.gp5, base64; a draft of the notes final so far "
              "while the job runs), `beats` (seconds in the recording) and `score_beats` (the same beats on "
              "the tab's constant-tempo time axis), `chords`, `final_until` per part, `backing_tracks`, and "
              "`audio`: source name (`original`, `no-<part>`) -> a link to play. 409 while queued.")


def router(manager: JobManager, auth: Auth) -> APIRouter:
    """The player routes.

    Args:
        manager: the job queue (records, live jobs, job folders).
        auth: the API key check and signed links.
    """
    routes = APIRouter(tags=["player"])
    key = Depends(auth.require_key)
    key_or_link = Depends(auth.require_key_or_link)
    drafts = DraftCache()

    async def lookup(job_id: str, who: Principal) -> tuple[JobRecord, Any]:
        record, live = (None, None) if not JOB_ID.match(job_id) else await manager.get(job_id)
        if record is None or not who.may_see(record.owner):  # another user's job does not exist here
            raise HTTPException(404, f"no job {job_id!r}")
        return record, live

    @routes.get("/v1/jobs/{job_id}/player", responses=ERRORS,
                summary="The tab player's data: the tab, its beats in the recording, the audio to play",
                description=PLAYER_DOC)
    async def player(job_id: str, who: Principal = key) -> JSONResponse:
        record, live = await lookup(job_id, who)
        if record.status == DONE:
            drafts.forget(record.id)
            data = await asyncio.to_thread(from_artifacts, manager.job_dir(record.id) / ARTIFACTS)
            if data is None:
                raise HTTPException(404, f"job {record.id} has no tab.gp5 and result.json to play")
            view = job_view(record, live, auth, 0)
            audio = {a.name.removesuffix(".flac"): a.url for a in view.artifacts
                     if a.name == ORIGINAL or (a.name.startswith("no-") and a.name.endswith(".flac"))}
            return JSONResponse(data.to_json(audio))
        song = getattr(live, "song", None) if live is not None else None
        if record.status != RUNNING or song is None:
            raise HTTPException(409, f"job {record.id} is {record.status}: it has no tab to play"
                                     + (" yet" if record.status != "failed" else ""))
        final_until: dict[str, float] = {}
        for ev in live.log.events:
            if ev.type == "notes":
                part = ev.data["part"]
                final_until[part] = max(final_until.get(part, 0.0), float(ev.data["final_until"]))
        data = await drafts.get(record.id, song, final_until)
        audio = {}
        if (manager.job_dir(record.id) / UPLOAD).is_file():
            audio["original"] = auth.link(f"/v1/jobs/{record.id}/source")
        return JSONResponse(data.to_json(audio))

    @routes.get("/v1/jobs/{job_id}/source", responses=ERRORS, response_class=FileResponse,
                summary="The uploaded song, while its job runs (then original.flac); Range requests work")
    async def source(job_id: str, who: Principal = key_or_link) -> FileResponse:
        record, _ = await lookup(job_id, who)
        path = manager.job_dir(record.id) / UPLOAD
        if record.status != RUNNING or not path.is_file():
            raise HTTPException(404, f"job {record.id} keeps its upload only while it runs; "
                                     f"play the artifact {ORIGINAL} instead")
        ctype = mimetypes.guess_type(record.filename or "")[0] or "application/octet-stream"
        return FileResponse(path, media_type=ctype, headers={"Cache-Control": "no-store"})

    return routes
