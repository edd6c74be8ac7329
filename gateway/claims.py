"""The shared job queue: claim with a lease, renew it, finish fenced, take over a dead gateway's jobs.

The `jobs` table is the queue. A gateway replica claims the oldest claimable job with
`SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL: replicas never wait on each other's
rows, and never get the same row; SQLite serves one gateway and serialises writes), names
itself its `worker`, counts an attempt, and holds a lease (`lease_until`) that it renews
while the song runs (the heartbeat). A job whose lease ran out (its gateway died or was
cut off) is claimable again: the next claim restarts the song from its stored upload,
or, once it was started `max_attempts` times, fails it with the reason instead.

Every write a worker makes to a job it runs names the worker and the attempt it claimed
(a fencing token): once another replica took the job over, or a client cancelled it, the
old worker's renew and finish match no row, so it stops and cannot overwrite the new
owner. Lease times come from the database's clock (PostgreSQL `now()`), so replicas'
clocks need not agree.

Why not a queue library (procrastinate, pgqueuer, ...): SQLite must stay the embedded
single-gateway default and those are PostgreSQL-only, the job rows already hold all the
state a queue needs, and the protocol is the few statements below, each one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    EventRow,
    JobRecord,
    JobRow,
    JobStore,
    StoredEvent,
    now,
    record_of,
    utc,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A claimed job: run it as `record.attempts`, or (gave_up) it was failed instead.

    `restart` says why an earlier attempt did not finish ("" for a first start).
    """

    record: JobRecord
    restart: str = ""
    gave_up: bool = False


@dataclass(frozen=True)
class Progress:
    """What a heartbeat records of a running job besides its lease: for views on other replicas."""

    attempt: int
    stages: dict[str, Any]
    notes: dict[str, int]


def db_now(store: JobStore, session: Session) -> dt.datetime:
    """The database's current time (PostgreSQL), or this process's (SQLite: one gateway)."""
    if store.is_sqlite:
        return now()
    value = utc(session.scalar(select(func.now())))
    assert value is not None
    return value


def claim(store: JobStore, worker: str, lease_seconds: float, max_attempts: int) -> Claim | None:
    """Claim the oldest queued job, or a running one whose lease ran out.

    Args:
        store: the job store.
        worker: this gateway's name (unique per process).
        lease_seconds: how long the claim holds without a renewal.
        max_attempts: a job already started this many times is failed, not run again.

    Returns:
        The claim, or None when nothing is claimable.
    """
    with store.session() as s, s.begin():
        t = db_now(store, s)
        query = (select(JobRow)
                 .where(or_(JobRow.status == QUEUED, and_(JobRow.status == RUNNING, JobRow.lease_until < t)))
                 .order_by(JobRow.created_at, JobRow.id).limit(1)
                 .with_for_update(skip_locked=True))
        row = s.scalars(query).first()
        if row is None:
            return None
        restart = ""
        if row.status == RUNNING:
            restart = f"the gateway running it ({row.worker or 'unknown'}) stopped renewing its lease"
        elif row.started_at is not None:
            restart = "the gateway running it stopped before the song finished"
        if row.attempts >= max_attempts:
            row.status, row.finished_at = FAILED, now()
            row.error = (f"the song was started {row.attempts} time(s) and did not finish ({restart}); "
                         "not trying again: submit it again, and if this repeats, check the gateways' logs")
            row.error_status = 500
            row.worker, row.lease_until, row.disk_bytes = "", None, 0
            log.warning("job %s: giving up after %d attempt(s): %s", row.id, row.attempts, restart)
            return Claim(record_of(row), restart, gave_up=True)
        row.status, row.worker, row.attempts = RUNNING, worker, row.attempts + 1
        row.started_at = now()
        row.lease_until = t + dt.timedelta(seconds=lease_seconds)
        if restart:
            log.warning("job %s: restarting (attempt %d): %s", row.id, row.attempts, restart)
        return Claim(record_of(row), restart)


def _held(job_id: str, worker: str, attempt: int) -> Any:
    return and_(JobRow.id == job_id, JobRow.worker == worker, JobRow.attempts == attempt,
                JobRow.status == RUNNING)


def renew(store: JobStore, worker: str, lease_seconds: float, jobs: Mapping[str, Progress]) -> set[str]:
    """Extend the leases of the jobs this worker runs, recording their progress.

    Returns:
        The ids still held; a job missing from it was taken over or cancelled elsewhere.
    """
    held: set[str] = set()
    if not jobs:
        return held
    with store.session() as s, s.begin():
        until = db_now(store, s) + dt.timedelta(seconds=lease_seconds)
        for job_id, p in jobs.items():
            result = s.execute(update(JobRow).where(_held(job_id, worker, p.attempt))
                               .values(lease_until=until, stages=p.stages, notes=p.notes))
            if getattr(result, "rowcount", 0):
                held.add(job_id)
    return held


def append(store: JobStore, worker: str, jobs: Mapping[str, tuple[int, list[StoredEvent]]]) -> set[str]:
    """Append events to the logs of jobs this worker holds; the ids of those it no longer holds.

    Each job's events go in one transaction that first locks the job's row and checks the
    worker still holds it: a worker that lost a job writes nothing more to its log, and a
    claim (which locks the row too) cannot slip in between the check and the write.

    Args:
        jobs: job id -> (the attempt it was claimed with, its new events in order).
    """
    lost: set[str] = set()
    for job_id, (attempt, events) in jobs.items():
        with store.session() as s, s.begin():
            if s.execute(select(JobRow.id).where(_held(job_id, worker, attempt)).with_for_update()).first() is None:
                lost.add(job_id)
                continue
            s.add_all([EventRow(job_id=e.job_id, seq=e.seq, type=e.type, data=e.data) for e in events])
    return lost


def finish(store: JobStore, job_id: str, worker: str, attempt: int, events: Sequence[StoredEvent] = (),
           drop: tuple[str, ...] = (), **values: Any) -> bool:
    """Write a job's end (status, artifacts, ...) and its last events if this worker still holds it.

    Args:
        events: the job's last events, its end event among them (written with the end,
            so a follower never sees a finished job whose log lacks its end).
        drop: event types to remove from its log now (a finished job's progress).

    Returns:
        False when the job was taken over or cancelled meanwhile (nothing written).
    """
    with store.session() as s, s.begin():
        # The worker's name stays on the record: who finished it, for an operator.
        result = s.execute(update(JobRow).where(_held(job_id, worker, attempt))
                           .values(lease_until=None, **values))
        if not getattr(result, "rowcount", 0):
            return False
        s.add_all([EventRow(job_id=e.job_id, seq=e.seq, type=e.type, data=e.data) for e in events])
        if drop:
            s.flush()
            s.execute(delete(EventRow).where(EventRow.job_id == job_id, EventRow.type.in_(drop)))
        return True


def release(store: JobStore, job_id: str, worker: str, attempt: int) -> bool:
    """Put a running job back in the queue (a graceful shutdown): another replica, or the
    next start, runs it again; the attempt is not counted against it."""
    with store.session() as s, s.begin():
        result = s.execute(update(JobRow).where(_held(job_id, worker, attempt))
                           .values(status=QUEUED, worker="", lease_until=None, attempts=JobRow.attempts - 1))
        return bool(getattr(result, "rowcount", 0))


def requeue_orphans(store: JobStore) -> list[str]:
    """Put every running job back in the queue at once (SQLite: only one gateway uses the
    database, so none of them has a live worker after a restart). Attempts stay counted."""
    with store.session() as s, s.begin():
        ids = list(s.scalars(select(JobRow.id).where(JobRow.status == RUNNING)).all())
        if ids:
            s.execute(update(JobRow).where(JobRow.id.in_(ids)).values(status=QUEUED, worker="", lease_until=None))
        return ids


def cancel(store: JobStore, job_id: str, message: str, status: int = 499) -> JobRecord | None:
    """Cancel a queued or running job wherever it runs (its worker notices at its next renew).

    Returns:
        The cancelled record, or None when the job was not queued or running.
    """
    with store.session() as s, s.begin():
        result = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status.in_((QUEUED, RUNNING)))
                           .values(status=CANCELLED, finished_at=now(), error=message, error_status=status,
                                   worker="", lease_until=None, disk_bytes=0))
        if not getattr(result, "rowcount", 0):
            return None
        row = s.get(JobRow, job_id)
        return record_of(row) if row is not None else None
