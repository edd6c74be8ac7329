"""The HTTP job queue: jobs in the shared store, claimed by any gateway replica, a bounded number at a time.

Uploads are stored in `<data_dir>/jobs/<id>/upload`, a job's work in `<id>/run<attempt>/`
and its artifacts, once done, in `<id>/artifacts/`; the record and the event log live in
the JobStore. Gateways that share a database must share the data dir too (a
ReadWriteMany volume): any replica may run a job another accepted, and serve its files.

Each gateway runs `http_max_running` workers. A worker claims the oldest queued job
(gateway/claims.py), runs it, and while it runs a heartbeat renews its lease and records
its progress; its events reach the store in small batches, so followers on any replica
see them (`follow`). When things stop:

- a graceful stop gives running jobs `grace` seconds, then puts them back in the queue
  (another replica, or the next start, runs them again); queued jobs stay queued;
- a crash (SIGKILL, a lost node) leaves running jobs whose lease runs out: another
  replica restarts them (with SQLite, whose one gateway is the crashed one, the next
  start does so at once), at most `job_max_attempts` starts in all; a `restart` event
  tells followers to forget what the earlier attempt said;
- a gateway that cannot renew its leases (database unreachable) stops those jobs before
  the leases run out, so a song never runs on two gateways at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway import claims
from gateway.chain import Stubs
from gateway.config import GatewayConfig
from gateway.drain import DRAIN_SAMPLES, DRAIN_WINDOW, drain_retry_after
from gateway.events import (
    ATTEMPT_TYPES,
    END_TYPES,
    KEEPALIVE_SECONDS,
    TRANSIENT_TYPES,
    EventLog,
    JobEvent,
    convert,
)
from gateway.job_files import (
    ARTIFACTS,
    LOST,
    SHUTDOWN,
    UPLOAD,
    clean_earlier_attempts,
    collect,
    place_artifacts,
    settle_files,
)
from gateway.options import JobOptions
from gateway.retention import Retention, remove_path
from gateway.song_job import SongJob
from gateway.spec import spec_from_config
from gateway.store import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    JobRecord,
    JobStore,
    StoredEvent,
    now,
)
from gateway.upload import AudioInfo
from tabagent.errors import NotReady, Overloaded, TabAgentError

log = logging.getLogger(__name__)

T = TypeVar("T")

FEED_BYTES = 1024 * 1024
CANCELLED_MESSAGE = "cancelled by the client"
LOST_UPLOAD = ("the upload is missing or incomplete on this gateway's data volume; submit the song again "
               "(gateways that share a database must share TABAGENT_DATA_DIR)")
FLUSH_SECONDS = 0.25         # how often a job's new events are written to the store
FOLLOW_POLL_SECONDS = 0.5    # how often a follower of a job run elsewhere looks for new events
END_GRACE_SECONDS = 3.0      # a finished record whose log lacks an end event gets one after this
JANITOR_SECONDS = 60.0


class Busy(Overloaded):
    """Every running slot and the whole backlog are taken (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class LiveJob:
    """A job this process runs now: its record, options, event log, attempt and task."""

    record: JobRecord
    options: JobOptions
    log: EventLog
    attempt: int
    stored: int = 0     # events up to this seq were stored before this process claimed it
    task: asyncio.Task[None] | None = None
    cancel_reason: str = ""
    finishing: bool = False
    song: SongJob | None = None   # while it runs: the chain's state so far (the page's draft tab)


class Reservation:
    """A place in the backlog held while an upload arrives; `release()` gives it back."""

    def __init__(self, manager: JobManager, places: int = 1) -> None:
        self.manager = manager
        self.places = places
        self.held = True

    def release(self) -> None:
        """Give the place back (idempotent: the job is recorded, or was refused)."""
        if self.held:
            self.held = False
            self.manager._uploading -= self.places


def worker_name(config: GatewayConfig) -> str:
    """This process's name in job records: the pod (or host) name, the pid and a random tag."""
    return f"{config.worker_name or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class JobManager:
    """Runs HTTP jobs from the shared store, at most `http_max_running` at once in this process.

    Args:
        config: gateway settings (data_dir, limits, leases, retention).
        stubs: the downstream services.
        store: where job records and events live.
        on_finish: called with each record this process finishes (metrics).
        wait_ready: awaited before each job starts; raises when the services stay down
            (a job waits while they restart instead of failing at once).
    """

    def __init__(self, config: GatewayConfig, stubs: Stubs, store: JobStore,
                 on_finish: Callable[[JobRecord], None] | None = None,
                 wait_ready: Callable[[], Awaitable[None]] | None = None) -> None:
        if config.http_max_running < 1 or config.http_max_backlog < 0:
            raise ValueError("TABAGENT_HTTP_MAX_RUNNING must be >= 1 and TABAGENT_HTTP_MAX_BACKLOG >= 0")
        self.config = config
        self.stubs = stubs
        self.store = store
        self.root = Path(config.data_dir).resolve() / "jobs"
        self.max_running = config.http_max_running
        self.max_backlog = config.http_max_backlog
        self.lease = config.job_lease_seconds
        self.on_finish = on_finish
        self.wait_ready = wait_ready
        self.worker = worker_name(config)
        self.live: dict[str, LiveJob] = {}
        self.counts: dict[str, int] = {s: 0 for s in STATUSES}   # the whole store's, refreshed by the heartbeat
        self.retention = Retention(store, self.root, config.retention_days, config.disk_budget_bytes)
        self._uploading = 0
        self._pending: list[StoredEvent] = []
        self._wake = asyncio.Event()
        self._sweep = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._db = ThreadPoolExecutor(1, thread_name_prefix="jobstore")  # writes in order
        self.started = False
        self.closing = False

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create or update the tables, settle what a previous process left, start the workers."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self._call(self.store.create_tables)
        if not self.store.shared:
            orphans = await self._call(claims.requeue_orphans, self.store)
            if orphans:
                log.warning("%d job(s) were running when the gateway stopped; they run again now", len(orphans))
            await self._call(self.retention.remove_strays, 0.0)
        self.counts = await self._call(self.store.counts)
        self._tasks = [asyncio.create_task(self._worker(), name=f"http-job-worker-{i}")
                       for i in range(self.max_running)]
        self._tasks += [asyncio.create_task(self._heartbeat(), name="http-job-heartbeat"),
                        asyncio.create_task(self._flusher(), name="http-job-events"),
                        asyncio.create_task(self._janitor(), name="http-job-retention")]
        self.started = True
        log.info("job queue: worker %s, %d slot(s), lease %.0f s, %d queued in the store", self.worker,
                 self.max_running, self.lease, self.counts[QUEUED])

    async def close(self, grace: float = 0.0) -> None:
        """Stop: running jobs get `grace` seconds, then go back to the queue (another
        replica or the next start runs them); queued jobs stay queued."""
        self.closing = True
        self._wake.set()
        tasks = [j.task for j in self.live.values() if j.task is not None and not j.task.done()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        tasks = [j.task for j in self.live.values() if j.task is not None and not j.task.done()]
        for job in list(self.live.values()):  # (including one claimed while closing began)
            if job.task is not None and not job.task.done():
                job.cancel_reason = job.cancel_reason or SHUTDOWN
                job.task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        for job in self.live.values():
            job.log.close()
        self._db.shutdown(wait=True)
        await asyncio.to_thread(self.store.close)

    # -- submitting -------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs this process runs now."""
        return sum(1 for j in self.live.values() if j.task is not None and not j.task.done())

    @property
    def queued(self) -> int:
        """Jobs waiting in the store's queue (all replicas), as of the last heartbeat."""
        return self.counts.get(QUEUED, 0)

    async def retry_after(self, ahead: int = 1) -> int:
        """Seconds until `ahead` places are likely free, from how fast the queue drains (see
        `drain_retry_after`)."""

        def measure() -> tuple[list[float], list[tuple[float, float]], list[float]]:
            t = now()
            speeds = self.store.recent_speeds(t - DRAIN_WINDOW, DRAIN_SAMPLES)
            running, waiting = self.store.queue_snapshot()
            return speeds, [((t - s).total_seconds() if s else 0.0, a) for s, a in running], waiting

        return drain_retry_after(*await asyncio.to_thread(measure), ahead=ahead)

    async def reserve(self, places: int = 1) -> Reservation:
        """Hold places for new jobs before their uploads are read.

        The backlog is the store's queue, shared by every replica: a gateway accepts a job
        while the queue (and uploads arriving here) is below `http_max_backlog` plus its
        own free running slots.

        Raises:
            Busy: running slots and backlog are full (HTTP 429, Retry-After from the drain rate).
            NotReady: the gateway is shutting down or not started (HTTP 503).
        """
        if self.closing or not self.started:
            raise NotReady("the gateway is not accepting jobs right now (starting or shutting down)")
        queued = len(await asyncio.to_thread(self.store.queued_ids))
        capacity = self.max_backlog + max(0, self.max_running - self.running)
        held = queued + self._uploading
        if held + places > capacity:
            ahead = held + places - capacity
            wait = await self.retry_after(ahead)
            raise Busy(f"the gateway is busy: {self.running} job(s) running here and {held} waiting "
                       f"(limits {self.max_running} + {self.max_backlog}); retry in about {wait} s", wait)
        self._uploading += places
        return Reservation(self, places)

    def new_job_dir(self) -> tuple[str, Path]:
        """A fresh random job id and its (new, empty) folder."""
        job_id = uuid.uuid4().hex
        path = self.job_dir(job_id)
        path.mkdir(parents=True)
        return job_id, path

    def job_dir(self, job_id: str) -> Path:
        """The storage folder of a job (its id comes from the store or uuid4, never a request)."""
        return self.root / job_id

    async def submit(self, reservation: Reservation | None, job_id: str, options: JobOptions, filename: str,
                     size: int, info: AudioInfo, owner: str = "", batch_id: str = "") -> JobRecord:
        """Record a job whose upload is stored and checked, and queue it."""
        title = options.title or (Path(filename).stem if filename else "")
        record = JobRecord(id=job_id, status=QUEUED, created_at=now(), filename=filename, title=title,
                           options=options.to_dict(), upload_bytes=size, duration=info.duration, owner=owner,
                           batch_id=batch_id, disk_bytes=size)
        try:
            await self._call(self.store.add, record, [StoredEvent(job_id, 1, "status", {"status": QUEUED})])
        finally:
            if reservation is not None:
                reservation.release()
        self.counts[QUEUED] = self.counts.get(QUEUED, 0) + 1
        self._wake.set()
        log.info("job %s queued (%s, %d bytes, user %s)", job_id, filename or "raw body", size, owner or "-")
        return record

    # -- reading ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> tuple[JobRecord | None, LiveJob | None]:
        """The job's record (the live copy when this process runs it) and its live state."""
        live = self.live.get(job_id)
        if live is not None:
            return live.record, live
        return await asyncio.to_thread(self.store.get, job_id), None

    async def find(self, status: str | None, limit: int, offset: int, owner: str | None = None,
                   batch_id: str | None = None) -> tuple[list[JobRecord], int]:
        """Records newest first (live copies for jobs this process runs), and the total."""
        records, total = await asyncio.to_thread(self.store.find, status, limit, offset, owner, batch_id)
        return [self.live[r.id].record if r.id in self.live else r for r in records], total

    async def positions(self) -> dict[str, int]:
        """Every queued job's 1-based place in the shared queue."""
        return {job_id: i + 1 for i, job_id in enumerate(await asyncio.to_thread(self.store.queued_ids))}

    async def follow(self, job_id: str, after: int = 0,
                     keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[JobEvent | None]:
        """A job's events with seq > `after`, then new ones until its end event, wherever it runs.

        Events of a job this process runs come from its log in memory as they happen;
        others from the store (replayed, then polled). Yields None after `keepalive`
        seconds without an event.
        """
        last, quiet = after, 0.0
        while True:
            live = self.live.get(job_id)
            if live is not None:
                if last < live.stored:  # what was said before this process claimed it
                    for e in await asyncio.to_thread(self.store.events, job_id, last):
                        if e.seq > live.stored:
                            break
                        last = e.seq
                        yield JobEvent(e.seq, e.type, e.data)
                    last = max(last, live.stored)
                async for ev in live.log.follow(last, keepalive):
                    if ev is None:
                        yield None
                        continue
                    last = ev.seq
                    yield ev
                    if ev.type in END_TYPES:
                        return
                if self.closing:
                    return
                continue  # its log closed without an end: the job goes on elsewhere
            stored = await asyncio.to_thread(self.store.events, job_id, last)
            for e in stored:
                last, quiet = e.seq, 0.0
                yield JobEvent(e.seq, e.type, e.data)
                if e.type in END_TYPES:
                    return
            if stored:
                continue
            if job_id in self.live:
                continue
            record = await asyncio.to_thread(self.store.get, job_id)
            if record is None:
                return
            if record.finished and (record.finished_at is None
                                    or (now() - record.finished_at).total_seconds() > END_GRACE_SECONDS):
                yield JobEvent(last + 1, record.status, {})  # a log without its end (an older gateway)
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            quiet += FOLLOW_POLL_SECONDS
            if quiet >= keepalive:
                quiet = 0.0
                yield None

    # -- cancelling and removing ------------------------------------------------------------

    async def cancel_or_remove(self, job_id: str) -> str | None:
        """Cancel a queued or running job (wherever it runs), or remove a finished one (its
        files, record and events).

        Returns:
            "cancelled", "removed", or None when there is no such job.
        """
        live = self.live.get(job_id)
        if live is not None and live.task is not None and not live.task.done():
            if not live.finishing:
                live.cancel_reason = CANCELLED
                live.task.cancel()
                await asyncio.gather(live.task, return_exceptions=True)
                return "cancelled"
            await asyncio.wait([live.task])  # it is ending on its own: remove it once it has
        record = await asyncio.to_thread(self.store.get, job_id)
        if record is None:
            return None
        if not record.finished:
            cancelled = await self._call(claims.cancel, self.store, job_id, CANCELLED_MESSAGE)
            if cancelled is not None:  # its worker, on another replica, stops at its next renew
                await self._call(self.store.append_event, job_id, CANCELLED, _end_data(cancelled))
                remove_path(self.job_dir(job_id))
                self._finished(cancelled)
                return "cancelled"
            record = await asyncio.to_thread(self.store.get, job_id)  # it ended meanwhile
            if record is None:
                return None
        remove_path(self.job_dir(record.id))
        await self._call(self.store.delete, record.id)
        log.info("job %s removed", record.id)
        return "removed"

    # -- running ----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self.closing:
            try:
                claim = await self._call(claims.claim, self.store, self.worker, self.lease,
                                         self.config.job_max_attempts)
            except Exception as exc:  # the database is away: try again later
                log.warning("could not claim a job: %s", exc)
                claim = None
                await asyncio.sleep(self.config.job_poll_seconds)
                continue
            if claim is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.job_poll_seconds)
                continue
            if claim.gave_up:
                await self._call(self.store.append_event, claim.record.id, FAILED, _end_data(claim.record))
                remove_path(self.job_dir(claim.record.id))
                self._finished(claim.record)
                continue
            record = claim.record
            seq = await self._call(self.store.last_seq, record.id)
            if claim.restart:
                await self._call(self.store.drop_events, record.id, ATTEMPT_TYPES)
            live = LiveJob(record, JobOptions.from_dict(record.options),
                           EventLog.resume(seq, self._persister(record.id)), record.attempts, seq)
            self.live[record.id] = live
            # The task exists before the next await: a DELETE now cancels it.
            live.task = asyncio.create_task(self._run(live, claim.restart), name=f"http-job-{record.id}")
            await asyncio.gather(live.task, return_exceptions=True)

    async def _run(self, live: LiveJob, restart: str) -> None:
        record = live.record
        jobdir = self.job_dir(record.id)
        upload = jobdir / UPLOAD
        workdir = jobdir / f"run{live.attempt}"
        job: SongJob | None = None
        feeder: asyncio.Task[None] | None = None
        outcome = FAILED
        try:
            if restart:
                live.log.publish("restart", {"attempt": live.attempt, "reason": restart})
            live.log.publish("status", {"status": RUNNING, "attempt": live.attempt})
            await asyncio.to_thread(clean_earlier_attempts, jobdir, workdir.name)
            if not upload.is_file() or upload.stat().st_size != record.upload_bytes:
                raise _LostUpload(LOST_UPLOAD)
            if self.wait_ready is not None:
                try:
                    await self.wait_ready()
                except TimeoutError as exc:
                    raise NotReady(f"the model services are not ready: {exc}") from None
            spec = spec_from_config(live.options.to_config(record.filename), record.id)
            job = SongJob(self.config, self.stubs, spec, workdir, keep_dir=True)
            live.song = job
            feeder = asyncio.create_task(_feed(job, upload))
            async for resp in job.events():
                event = convert(resp)
                if event is not None:
                    live.log.publish(*event)
            files = await asyncio.to_thread(collect, job.artifact_paths, workdir / ARTIFACTS)
            result = job.result
            summary = job.summary()
            if await self._finish(live, DONE, seconds=result.seconds, wall_seconds=result.wall_seconds,
                                  notes=dict(summary.notes), artifacts=files, warnings=list(result.warnings),
                                  disk_bytes=sum(f["size"] for f in files)):
                outcome = DONE
            else:
                outcome = LOST
        except asyncio.CancelledError:
            outcome = live.cancel_reason or SHUTDOWN
            if outcome == CANCELLED:
                await self._finish(live, CANCELLED, error=CANCELLED_MESSAGE, error_status=499)
            elif outcome == SHUTDOWN:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._flush())
                released = await asyncio.shield(self._call(claims.release, self.store, record.id, self.worker,
                                                           live.attempt))
                if released:
                    log.info("job %s goes back to the queue (gateway stopping)", record.id)
                    self.counts[QUEUED] = self.counts.get(QUEUED, 0) + 1
        except _LostUpload as exc:
            await self._finish(live, FAILED, error=exc.message, error_status=503)
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
            live.song = None
            if job is not None:
                job.close()
            self.live.pop(record.id, None)
            live.log.close()
            await asyncio.to_thread(settle_files, jobdir, workdir, outcome)
            self._wake.set()  # a slot is free

    async def _finish(self, live: LiveJob, status: str, **values: Any) -> bool:
        """Record a job's end, with its end event, if this worker still holds it; False if it was lost."""
        live.finishing = True
        record = live.record
        record.status, record.finished_at = status, now()
        record.stages = {k: dict(v) for k, v in live.log.stages.items()}
        record.notes = values.pop("notes", None) or dict(live.log.notes)
        values.setdefault("disk_bytes", 0)
        for name, value in values.items():
            setattr(record, name, value)
        fields = {name: getattr(record, name) for name in
                  ("status", "finished_at", "stages", "notes", "seconds", "wall_seconds", "artifacts",
                   "warnings", "error", "error_status", "disk_bytes")}
        jobdir = self.job_dir(record.id)
        # The end is stored with the job's last events in the finishing transaction, and only
        # then told to this process's followers.
        end = JobEvent(live.log.seq + 1, status, _end_data(record))
        last = [e for e in self._pending if e.job_id == record.id]
        self._pending = [e for e in self._pending if e.job_id != record.id]
        last.append(StoredEvent(record.id, end.seq, end.type, end.data))
        try:
            if status == DONE:
                await asyncio.to_thread(place_artifacts, jobdir / f"run{live.attempt}" / ARTIFACTS,
                                        jobdir / ARTIFACTS)
            held = await asyncio.shield(self._call(claims.finish, self.store, record.id, self.worker, live.attempt,
                                                   last, TRANSIENT_TYPES, **fields))
        except asyncio.CancelledError:
            log.warning("job %s: shutting down before its record was updated", record.id)
            return False
        if not held:
            log.warning("job %s was taken over or cancelled elsewhere; dropping this attempt's result", record.id)
            return False
        # The files are as the record says before anyone hears of the end.
        await asyncio.shield(asyncio.to_thread(settle_files, jobdir, jobdir / f"run{live.attempt}", status))
        live.log.on_publish = None  # stored above
        live.log.publish(status, end.data)
        live.log.compact()
        log.info("job %s %s%s", record.id, status, f": {record.error}" if record.error else "")
        self._finished(record)
        return True

    def _finished(self, record: JobRecord) -> None:
        if self.on_finish is not None:
            self.on_finish(record)
        if self.retention.enabled:
            self._sweep.set()

    # -- background: events, leases, retention ------------------------------------------------

    def _persister(self, job_id: str) -> Callable[[JobEvent], None]:
        """What a running job's log calls with each event: queue it for the store."""

        def persist(ev: JobEvent) -> None:
            self._pending.append(StoredEvent(job_id, ev.seq, ev.type, ev.data))

        return persist

    async def _flush(self) -> None:
        """Store the events published since the last flush, for the jobs this worker still holds."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        jobs: dict[str, tuple[int, list[StoredEvent]]] = {}
        for ev in batch:
            live = self.live.get(ev.job_id)
            if live is not None:  # (an attempt that ended writes nothing more)
                jobs.setdefault(ev.job_id, (live.attempt, []))[1].append(ev)
        try:
            lost = await self._call(claims.append, self.store, self.worker, jobs)
        except Exception:
            self._pending = batch + self._pending  # the database is away: try them again
            raise
        for job_id in lost:
            self._lose(job_id)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception as exc:  # the database is away: the heartbeat decides what that means
                log.warning("could not store job events: %s", exc)

    def _lose(self, job_id: str) -> None:
        live = self.live.get(job_id)
        if live is not None and live.task is not None and not live.task.done() and not live.finishing:
            log.warning("job %s: %s; stopping it here", job_id, LOST)
            live.cancel_reason = LOST
            live.task.cancel()

    async def _heartbeat(self) -> None:
        interval = min(self.lease / 3, 2.0)
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            jobs = {job_id: claims.Progress(j.attempt, {k: dict(v) for k, v in j.log.stages.items()},
                                            dict(j.log.notes))
                    for job_id, j in self.live.items() if not j.finishing}
            try:
                held = await self._call(claims.renew, self.store, self.worker, self.lease, jobs)
                self.counts = await self._call(self.store.counts)
                renewed = time.monotonic()
            except Exception as exc:
                log.warning("could not renew job leases: %s", exc)
                if time.monotonic() - renewed > self.lease * 2 / 3:  # stop before another replica restarts them
                    for job_id in list(self.live):
                        self._lose(job_id)
                continue
            for job_id in set(jobs) - held:
                self._lose(job_id)

    async def _janitor(self) -> None:
        if not self.retention.enabled and not self.store.shared:
            return
        while True:
            try:
                removed = await self._call(self.retention.sweep)
                if removed:
                    self.counts = await self._call(self.store.counts)
            except Exception:
                log.exception("retention sweep failed")
            self._sweep.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep.wait(), JANITOR_SECONDS)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call on the store's own thread (writes keep their order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))


class _LostUpload(TabAgentError):
    http_status = 503


def _end_data(record: JobRecord) -> dict[str, Any]:
    end: dict[str, Any] = {"status": record.status, "notes": record.notes,
                           "artifacts": [a["name"] for a in record.artifacts]}
    if record.error:
        end["error"] = {"message": record.error, "status": record.error_status}
    return end


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
