"""The HTTP job queue: a bounded number of running jobs, a bounded backlog, records that outlive restarts.

Uploads are stored in `<data_dir>/jobs/<id>/upload` and the job's artifacts in
`<data_dir>/jobs/<id>/artifacts/`; the record lives in the JobStore. On start, jobs a
previous process left running are marked failed ("interrupted by a gateway restart") and
their partial files removed; jobs that were still queued, whose upload is stored whole,
are queued again (resumed); folders without a record are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway import artifacts as artifact_files
from gateway.chain import Stubs
from gateway.config import GatewayConfig
from gateway.events import EventLog, convert
from gateway.options import JobOptions
from gateway.song_job import SongJob
from gateway.spec import spec_from_config
from gateway.store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobRecord, JobStore, now
from gateway.upload import AudioInfo
from tabagent.errors import NotReady, Overloaded, TabAgentError

log = logging.getLogger(__name__)

T = TypeVar("T")

UPLOAD = "upload"
ARTIFACTS = "artifacts"
FEED_BYTES = 1024 * 1024
INTERRUPTED = "interrupted by a gateway restart; submit the song again"
SHUTDOWN = "interrupted by a gateway shutdown; submit the song again"
LOST_UPLOAD = "the upload was not stored completely before a gateway restart; submit the song again"
DEFAULT_JOB_SECONDS = 30.0   # Retry-After estimate before any job has finished


class Busy(Overloaded):
    """Every running slot and the whole backlog are taken (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class LiveJob:
    """A job this process knows in memory: its record, options, event log and task."""

    record: JobRecord
    options: JobOptions
    log: EventLog = field(default_factory=EventLog)
    task: asyncio.Task[None] | None = None
    cancel_reason: str = ""


class Reservation:
    """A place in the backlog held while an upload arrives; `release()` gives it back."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.held = True

    def release(self) -> None:
        """Give the place back (idempotent: the job is recorded, or was refused)."""
        if self.held:
            self.held = False
            self.manager._uploading -= 1


class JobManager:
    """Runs HTTP jobs through the chain, at most `http_max_running` at once.

    Args:
        config: gateway settings (data_dir, limits).
        stubs: the downstream services.
        store: where job records live.
        on_finish: called with each finished record (metrics).
        wait_ready: awaited before each job starts; raises when the services stay down
            (a job stays queued while they restart instead of failing at once).
        keep_logs: finished jobs whose full event log stays in memory for late subscribers.
    """

    def __init__(self, config: GatewayConfig, stubs: Stubs, store: JobStore,
                 on_finish: Callable[[JobRecord], None] | None = None,
                 wait_ready: Callable[[], Awaitable[None]] | None = None, keep_logs: int = 64) -> None:
        if config.http_max_running < 1 or config.http_max_backlog < 0:
            raise ValueError("TABAGENT_HTTP_MAX_RUNNING must be >= 1 and TABAGENT_HTTP_MAX_BACKLOG >= 0")
        self.config = config
        self.stubs = stubs
        self.store = store
        self.root = Path(config.data_dir).resolve() / "jobs"
        self.max_running = config.http_max_running
        self.max_backlog = config.http_max_backlog
        self.on_finish = on_finish
        self.wait_ready = wait_ready
        self.keep_logs = keep_logs
        self.live: dict[str, LiveJob] = {}
        self._waiting: deque[str] = deque()
        self._finished: deque[str] = deque()
        self._cond = asyncio.Condition()
        self._workers: list[asyncio.Task[None]] = []
        self._uploading = 0
        self._walls: deque[float] = deque(maxlen=20)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="jobstore")  # writes in order
        self.started = False
        self.closing = False

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the table, settle what a previous process left, start the workers."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self._call(self.store.create_tables)
        for record in await self._call(self._recover):
            live = LiveJob(record, JobOptions.from_dict(record.options))
            self.live[record.id] = live
            live.log.publish("status", {"status": QUEUED})
            self._waiting.append(record.id)
        self._workers = [asyncio.create_task(self._worker(), name=f"http-job-worker-{i}")
                         for i in range(self.max_running)]
        self.started = True
        if self._waiting:
            log.info("resumed %d queued job(s) after a restart", len(self._waiting))

    def _recover(self) -> list[JobRecord]:
        resumed: list[JobRecord] = []
        interrupted: list[str] = []
        lost: list[str] = []
        for record in self.store.unfinished():
            upload = self.job_dir(record.id) / UPLOAD
            whole = upload.is_file() and upload.stat().st_size == record.upload_bytes
            if record.status == QUEUED and whole:
                resumed.append(record)
            elif record.status == QUEUED:
                lost.append(record.id)
            else:
                interrupted.append(record.id)
        self.store.mark_failed(interrupted, INTERRUPTED, 503)
        self.store.mark_failed(lost, LOST_UPLOAD, 503)
        if interrupted or lost:
            log.warning("marked %d interrupted job(s) failed after a restart", len(interrupted) + len(lost))
        known = self.store.ids()
        keep = {r.id for r in resumed}
        for path in self.root.iterdir():
            if path.name not in known:
                _remove(path)  # an upload that never became a job (a crash mid-request)
            elif path.name in interrupted or path.name in lost:
                _remove(path)
            elif path.name not in keep:
                for leftover in path.glob("tabagent-upload-*"):
                    leftover.unlink(missing_ok=True)
                (path / UPLOAD).unlink(missing_ok=True)
        return resumed

    async def close(self, grace: float = 0.0) -> None:
        """Stop: running jobs get `grace` seconds, then are failed as interrupted; queued
        jobs stay queued (with their uploads) for the next start."""
        self.closing = True
        async with self._cond:
            self._cond.notify_all()
        tasks = [j.task for j in self.live.values() if j.task is not None and not j.task.done()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for job in self.live.values():
            if job.task is not None and not job.task.done():
                job.cancel_reason = SHUTDOWN
                job.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for job in self.live.values():
            job.log.close()
        self._db.shutdown(wait=True)
        await asyncio.to_thread(self.store.close)

    # -- submitting -------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs holding a running slot now."""
        return sum(1 for j in self.live.values() if j.task is not None and not j.task.done())

    @property
    def queued(self) -> int:
        """Jobs waiting for a running slot."""
        return len(self._waiting)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the recent mean job time per running slot."""
        mean = sum(self._walls) / len(self._walls) if self._walls else DEFAULT_JOB_SECONDS
        return int(min(600, max(1, math.ceil(mean / self.max_running))))

    def reserve(self) -> Reservation:
        """Hold a place for a new job before its upload is read.

        Raises:
            Busy: running slots and backlog are full (HTTP 429).
            NotReady: the gateway is shutting down or not started (HTTP 503).
        """
        if self.closing or not self.started:
            raise NotReady("the gateway is not accepting jobs right now (starting or shutting down)")
        held = self.running + self.queued + self._uploading
        if held >= self.max_running + self.max_backlog:
            raise Busy(f"the gateway is busy: {self.running} job(s) running and {self.queued + self._uploading} "
                       f"waiting (limits {self.max_running} + {self.max_backlog}); retry later",
                       self.retry_after())
        self._uploading += 1
        return Reservation(self)

    def new_job_dir(self) -> tuple[str, Path]:
        """A fresh random job id and its (new, empty) folder."""
        job_id = uuid.uuid4().hex
        path = self.job_dir(job_id)
        path.mkdir(parents=True)
        return job_id, path

    def job_dir(self, job_id: str) -> Path:
        """The storage folder of a job (its id comes from the store or uuid4, never a request)."""
        return self.root / job_id

    async def submit(self, reservation: Reservation, job_id: str, options: JobOptions, filename: str,
                     size: int, info: AudioInfo) -> LiveJob:
        """Record a job whose upload is stored and checked, and queue it."""
        title = options.title or (Path(filename).stem if filename else "")
        record = JobRecord(id=job_id, status=QUEUED, created_at=now(), filename=filename, title=title,
                           options=options.to_dict(), upload_bytes=size, duration=info.duration)
        try:
            await self._call(self.store.add, record)
        finally:
            reservation.release()
        live = LiveJob(record, options)
        self.live[job_id] = live
        live.log.publish("status", {"status": QUEUED})
        async with self._cond:
            self._waiting.append(job_id)
            self._cond.notify()
        log.info("job %s queued (%s, %d bytes; %d running, %d waiting before it)", job_id,
                 filename or "raw body", size, self.running, len(self._waiting) - 1)
        return live

    def position(self, job_id: str) -> int:
        """1-based place in the queue, 0 if not queued."""
        try:
            return self._waiting.index(job_id) + 1
        except ValueError:
            return 0

    # -- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> tuple[JobRecord | None, LiveJob | None]:
        """The job's record (the live copy when this process runs it) and its live state."""
        live = self.live.get(job_id)
        if live is not None:
            return live.record, live
        return await asyncio.to_thread(self.store.get, job_id), None

    async def find(self, status: str | None, limit: int, offset: int) -> tuple[list[JobRecord], int]:
        """Records newest first (live copies for jobs this process holds), and the total."""
        records, total = await asyncio.to_thread(self.store.find, status, limit, offset)
        return [self.live[r.id].record if r.id in self.live else r for r in records], total

    # -- cancelling and removing ------------------------------------------------------------

    async def cancel_or_remove(self, job_id: str) -> str | None:
        """Cancel a queued or running job, or remove a finished one (its files and record).

        Returns:
            "cancelled", "removed", or None when there is no such job.
        """
        live = self.live.get(job_id)
        if live is not None and job_id in self._waiting:
            self._waiting.remove(job_id)
            await self._finish(live, CANCELLED, error="cancelled by the client", error_status=499)
            return "cancelled"
        if live is not None and live.task is not None and not live.task.done():
            live.cancel_reason = CANCELLED
            live.task.cancel()
            await asyncio.gather(live.task, return_exceptions=True)
            return "cancelled"
        record, _ = await self.get(job_id)
        if record is None:
            return None
        _remove(self.job_dir(record.id))
        await self._call(self.store.delete, record.id)
        self.live.pop(record.id, None)
        log.info("job %s removed", record.id)
        return "removed"

    # -- running ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            async with self._cond:
                await self._cond.wait_for(lambda: bool(self._waiting) or self.closing)
                if self.closing:
                    return
                live = self.live[self._waiting.popleft()]
                # The task exists before the next await: a DELETE now cancels it.
                live.task = asyncio.create_task(self._run(live), name=f"http-job-{live.record.id}")
            await asyncio.gather(live.task, return_exceptions=True)

    async def _run(self, live: LiveJob) -> None:
        record = live.record
        jobdir = self.job_dir(record.id)
        upload = jobdir / UPLOAD
        job: SongJob | None = None
        feeder: asyncio.Task[None] | None = None
        ok = False
        try:
            if self.wait_ready is not None:
                try:
                    await self.wait_ready()
                except TimeoutError as exc:
                    raise NotReady(f"the model services are not ready: {exc}") from None
            record.status, record.started_at = RUNNING, now()
            await self._call(self.store.update, record.id, status=RUNNING, started_at=record.started_at)
            live.log.publish("status", {"status": RUNNING})
            spec = spec_from_config(live.options.to_config(record.filename), record.id)
            job = SongJob(self.config, self.stubs, spec, jobdir, keep_dir=True)
            feeder = asyncio.create_task(_feed(job, upload))
            async for resp in job.events():
                event = convert(resp)
                if event is not None:
                    live.log.publish(*event)
            files = await asyncio.to_thread(_collect, job.artifact_paths, jobdir / ARTIFACTS)
            result = job.result
            summary = job.summary()
            await self._finish(live, DONE, seconds=result.seconds, wall_seconds=result.wall_seconds,
                               notes=dict(summary.notes), artifacts=files, warnings=list(result.warnings))
            ok = True
        except asyncio.CancelledError:
            if live.cancel_reason == CANCELLED:
                await self._finish(live, CANCELLED, error="cancelled by the client", error_status=499)
            else:
                await self._finish(live, FAILED, error=live.cancel_reason or SHUTDOWN, error_status=503)
        except TabAgentError as exc:
            log.info("job %s failed: %s", record.id, exc.message)
            await self._finish(live, FAILED, error=exc.message, error_status=exc.http_status)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", record.id)
            await self._finish(live, FAILED, error=f"the gateway failed unexpectedly ({type(exc).__name__}); "
                               "the error is logged", error_status=500)
        finally:
            if feeder is not None:
                feeder.cancel()
            if job is not None:
                job.close()
            upload.unlink(missing_ok=True)
            if not ok:
                _remove(jobdir)

    async def _finish(self, live: LiveJob, status: str, **values: Any) -> None:
        record = live.record
        record.status, record.finished_at = status, now()
        record.stages = {k: dict(v) for k, v in live.log.stages.items()}
        record.notes = values.pop("notes", None) or dict(live.log.notes)
        for name, value in values.items():
            setattr(record, name, value)
        fields = {name: getattr(record, name) for name in
                  ("status", "finished_at", "stages", "notes", "seconds", "wall_seconds", "artifacts",
                   "warnings", "error", "error_status")}
        try:
            await asyncio.shield(self._call(self.store.update, record.id, **fields))
        except asyncio.CancelledError:
            log.warning("job %s: shutting down before its record was updated", record.id)
        if status == DONE and record.wall_seconds:
            self._walls.append(record.wall_seconds)
        end = {"status": status, "notes": record.notes, "artifacts": [a["name"] for a in record.artifacts]}
        if record.error:
            end["error"] = {"message": record.error, "status": record.error_status}
        live.log.publish(status, end)
        live.log.compact()
        if status != DONE:
            _remove(self.job_dir(record.id))
        log.info("job %s %s%s", record.id, status, f": {record.error}" if record.error else "")
        if self.on_finish is not None:
            self.on_finish(record)
        self._finished.append(record.id)
        while len(self._finished) > self.keep_logs:
            old = self._finished.popleft()
            job = self.live.get(old)
            if job is not None and job.record.finished:
                del self.live[old]

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call on the store's own thread (writes keep their order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))


async def _feed(job: SongJob, upload: Path) -> None:
    """Copy the stored upload into the job's spool (the decoder follows it as it grows)."""
    try:
        with open(upload, "rb") as f:
            while data := await asyncio.to_thread(f.read, FEED_BYTES):
                job.spool.write(data)
        job.spool.finish()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the stored upload vanished or is over the limit
        job.spool.abort(exc)


def _collect(paths: list[Path], outdir: Path) -> list[dict[str, Any]]:
    """Move every artifact (video and stems are written beside the folder) into `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for path in paths:
        target = outdir / path.name
        if path.resolve() != target.resolve():
            path.replace(target)
        files.append({"name": target.name, "path": f"{ARTIFACTS}/{target.name}",
                      "size": target.stat().st_size, "content_type": artifact_files.content_type(target.name)})
    return files


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
