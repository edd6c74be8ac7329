"""The JSON shapes of the HTTP API (published in its OpenAPI document) and how a job becomes one."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from gateway.auth import Auth
from gateway.job_queue import LiveJob
from gateway.store import JobRecord


class Stage(BaseModel):
    """How far one stage got: seconds of audio done, of how many (0 when not known yet)."""

    done_seconds: float
    total_seconds: float
    fraction: float | None = Field(None, description="done/total when the total is known")


class ArtifactInfo(BaseModel):
    """One file a done job produced."""

    name: str = Field(examples=["tab.txt"])
    size: int
    content_type: str
    url: str = Field(description="GET it here; signed (works without the header) when an API key is set")


class JobError(BaseModel):
    """Why a job failed or was cancelled."""

    message: str = Field(examples=["the file is not audio: it looks like text"])
    status: int = Field(description="the HTTP status this error maps to", examples=[415])


class JobView(BaseModel):
    """A job: its status, per-stage progress, note counts and artifacts."""

    id: str = Field(examples=["3f2b9c0e8d7a4b6c9e1f2a3b4c5d6e7f"])
    status: str = Field(description="queued, running, done, failed or cancelled")
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    filename: str = ""
    title: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    duration: float | None = Field(None, description="seconds of audio the file declares")
    seconds: float = Field(0.0, description="seconds of audio processed")
    wall_seconds: float = 0.0
    queue_position: int = Field(0, description="1 = next to run; 0 when not queued")
    stages: dict[str, Stage] = Field(default_factory=dict,
                                     description="decode, separate, transcribe:<part>, render")
    notes: dict[str, int] = Field(default_factory=dict, description="notes found so far, per part")
    artifacts: list[ArtifactInfo] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: JobError | None = None
    owner: str = Field("", description="the user whose API key made the job")
    batch_id: str = Field("", description="the batch it was uploaded in, if any")
    attempts: int = Field(0, description="times it was started (more than 1: a gateway stopped while it ran)")
    links: dict[str, str] = Field(default_factory=dict, description="self, events (signed when a key is set)"
                                  ", batch")


class JobList(BaseModel):
    """A page of jobs, newest first, and how many there are in all."""

    jobs: list[JobView]
    total: int
    limit: int
    offset: int


class BatchJob(BaseModel):
    """One song of a batch: its job's id, file, status and links."""

    id: str
    filename: str
    status: str
    error: JobError | None = None
    links: dict[str, str] = Field(default_factory=dict, description="self, events, and each artifact once done")


class BatchView(BaseModel):
    """Songs uploaded together: one status for all, the count per status, and each job."""

    id: str
    status: str = Field(description="queued, running, done (all done), partial (some failed), failed "
                                    "(none done) or cancelled")
    created_at: dt.datetime
    title: str = ""
    owner: str = ""
    total: int
    counts: dict[str, int] = Field(description="jobs per status")
    jobs: list[BatchJob]
    links: dict[str, str] = Field(default_factory=dict)


class ErrorDetail(BaseModel):
    type: str = Field(examples=["UnreadableAudio"])
    message: str
    status: int


class ErrorBody(BaseModel):
    """Every error response: `{"error": {"type", "message", "status"}}`."""

    error: ErrorDetail


class Health(BaseModel):
    """/healthz and /readyz: overall status and each dependency's."""

    status: str
    services: dict[str, str] = Field(default_factory=dict)


def job_path(job_id: str) -> str:
    """The URL path of a job."""
    return f"/v1/jobs/{job_id}"


def job_view(record: JobRecord, live: LiveJob | None, auth: Auth, position: int = 0) -> JobView:
    """The API's view of a job (live progress when this process is running it)."""
    base = job_path(record.id)
    stages_src = live.log.stages if live is not None and not record.finished else record.stages
    notes = dict(live.log.notes) if live is not None and not record.finished else dict(record.notes)
    stages = {}
    for key, s in stages_src.items():
        total = s.get("total_seconds") or (record.duration or 0.0)
        done = s.get("done_seconds", 0.0)
        stages[key] = Stage(done_seconds=done, total_seconds=s.get("total_seconds", 0.0),
                            fraction=round(min(1.0, done / total), 4) if total else None)
    artifacts = [ArtifactInfo(name=a["name"], size=a["size"], content_type=a["content_type"],
                              url=auth.link(f"{base}/artifacts/{a['name']}"))
                 for a in record.artifacts]
    return JobView(
        id=record.id, status=record.status, created_at=record.created_at, started_at=record.started_at,
        finished_at=record.finished_at, filename=record.filename, title=record.title,
        options=record.options, duration=record.duration, seconds=record.seconds,
        wall_seconds=record.wall_seconds, queue_position=position, stages=stages, notes=notes,
        artifacts=artifacts, warnings=record.warnings,
        error=JobError(message=record.error, status=record.error_status) if record.error else None,
        owner=record.owner, batch_id=record.batch_id, attempts=record.attempts,
        links={"self": base, "events": auth.link(f"{base}/events"),
               **({"batch": batch_path(record.batch_id)} if record.batch_id else {})},
    )


def batch_path(batch_id: str) -> str:
    """The URL path of a batch."""
    return f"/v1/batches/{batch_id}"


def batch_status(counts: dict[str, int]) -> str:
    """One status for a batch from its jobs' statuses."""
    total = sum(counts.values())
    unfinished = counts.get("queued", 0) + counts.get("running", 0)
    if unfinished:
        return "queued" if counts.get("queued", 0) == total else "running"
    if counts.get("done", 0) == total:
        return "done"
    if counts.get("cancelled", 0) == total:
        return "cancelled"
    return "partial" if counts.get("done", 0) else "failed"
