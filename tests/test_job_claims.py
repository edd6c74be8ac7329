"""The shared queue's statements on their own, on SQLite and on a real PostgreSQL.

Claims go oldest first and never twice (eight threads claiming at once on PostgreSQL get
distinct jobs: SKIP LOCKED); a lease that runs out makes the job claimable again, and the
old worker's renew and finish then match nothing (the fence); after `max_attempts`
starts a job fails with its reason; a graceful release does not count the attempt;
cancelling stops the worker's next renew; retention removes by age and by disk budget;
tables made by an older version get the new columns.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pg_fixtures import new_database, postgres_server  # noqa: F401 - fixture
from sqlalchemy import create_engine, text

from gateway import claims
from gateway.drain import drain_retry_after
from gateway.retention import Retention
from gateway.store import (
    CANCELLED,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    JobRecord,
    JobStore,
    StoredEvent,
    database_url,
    now,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        s = JobStore.from_config("", tmp_path)
    else:
        s = JobStore(database_url(new_database(request.getfixturevalue("postgres_server")), tmp_path))
    s.create_tables()
    yield s
    s.close()


def add_jobs(store: JobStore, n: int, **values) -> list[str]:
    t0 = now() - dt.timedelta(minutes=1)
    ids = [f"{i:032x}" for i in range(n)]
    for i, job_id in enumerate(ids):
        store.add(JobRecord(id=job_id, status=QUEUED, created_at=t0 + dt.timedelta(seconds=i), **values))
    return ids


def test_claims_go_oldest_first_and_fence_a_worker_that_lost_its_lease(store: JobStore) -> None:
    ids = add_jobs(store, 3)
    first = claims.claim(store, "w1", 0.2, 3)
    assert first is not None and first.record.id == ids[0] and first.record.attempts == 1 and not first.restart
    assert first.record.status == RUNNING and first.record.worker == "w1"
    second = claims.claim(store, "w1", 30, 3)
    assert second is not None and second.record.id == ids[1]
    assert claims.renew(store, "w1", 30, {ids[1]: claims.Progress(1, {"decode": {"done_seconds": 1}}, {"bass": 2})}) \
        == {ids[1]}
    assert store.get(ids[1]).stages == {"decode": {"done_seconds": 1}}  # progress for other replicas' views
    time.sleep(0.4)  # w1's lease on the first job runs out
    taken = claims.claim(store, "w2", 30, 3)
    assert taken is not None and taken.record.id == ids[0] and taken.record.attempts == 2
    assert "w1" in taken.restart and "lease" in taken.restart
    # The old worker is fenced off: its renew and its finish match nothing.
    assert claims.renew(store, "w1", 30, {ids[0]: claims.Progress(1, {}, {})}) == set()
    assert not claims.finish(store, ids[0], "w1", 1, status=DONE, finished_at=now())
    assert claims.finish(store, ids[0], "w2", 2, status=DONE, finished_at=now())
    done = store.get(ids[0])
    assert done.status == DONE and done.worker == "w2" and done.lease_until is None
    third = claims.claim(store, "w2", 30, 3)
    assert third is not None and third.record.id == ids[2]
    assert claims.claim(store, "w2", 30, 3) is None


def test_attempts_run_out_with_a_reason_and_a_release_is_not_counted(store: JobStore) -> None:
    (job_id,) = add_jobs(store, 1)
    for attempt in (1, 2):
        c = claims.claim(store, f"w{attempt}", 0.05, 2)
        assert c is not None and c.record.attempts == attempt and not c.gave_up
        time.sleep(0.15)
    gave_up = claims.claim(store, "w3", 30, 2)
    assert gave_up is not None and gave_up.gave_up
    failed = store.get(job_id)
    assert failed.status == FAILED and "started 2 time(s)" in failed.error and "w2" in failed.error
    assert claims.claim(store, "w3", 30, 2) is None
    other = f"{9:032x}"
    store.add(JobRecord(id=other, status=QUEUED, created_at=now()))
    c = claims.claim(store, "w4", 30, 2)
    assert c is not None and c.record.id == other
    assert claims.release(store, other, "w4", 1)  # a graceful stop: back in the queue
    again = claims.claim(store, "w5", 30, 2)
    assert again is not None and again.record.attempts == 1 and again.restart  # not counted, but a restart


def test_cancel_reaches_the_worker_and_requeue_after_a_restart(store: JobStore) -> None:
    a, b = add_jobs(store, 2)
    claimed = claims.claim(store, "w1", 30, 3)
    assert claimed is not None and claimed.record.id == a
    cancelled = claims.cancel(store, a, "cancelled by the client")
    assert cancelled is not None and cancelled.status == CANCELLED and cancelled.error_status == 499
    assert claims.renew(store, "w1", 30, {a: claims.Progress(1, {}, {})}) == set()  # the worker stops
    assert claims.cancel(store, a, "again") is None
    claimed = claims.claim(store, "w1", 30, 3)
    assert claimed is not None and claimed.record.id == b
    # Only the worker holding a job writes to its log; the end goes in with the finish.
    assert claims.append(store, "w1", {b: (1, [StoredEvent(b, 1, "status", {"status": "running"})])}) == set()
    assert claims.append(store, "w9", {b: (1, [StoredEvent(b, 2, "notes", {})])}) == {b}
    assert claims.append(store, "w1", {b: (2, [StoredEvent(b, 2, "notes", {})])}) == {b}  # an older attempt
    assert [e.seq for e in store.events(b)] == [1]
    assert claims.requeue_orphans(store) == [b]
    assert store.get(b).status == QUEUED and store.get(b).attempts == 1
    assert claims.append(store, "w1", {b: (1, [StoredEvent(b, 2, "notes", {})])}) == {b}  # requeued: not held
    again = claims.claim(store, "w2", 30, 3)
    assert again is not None and again.record.id == b and again.restart
    assert claims.append(store, "w2", {b: (2, [StoredEvent(b, 2, "progress", {}), StoredEvent(b, 3, "notes", {})])}) \
        == set()
    assert claims.finish(store, b, "w2", 2, [StoredEvent(b, 4, "done", {})], ("progress",), status=DONE)
    assert [(e.seq, e.type) for e in store.events(b)] == [(1, "status"), (3, "notes"), (4, "done")]
    assert not claims.finish(store, b, "w2", 2, [StoredEvent(b, 5, "done", {})], status=DONE)  # once only
    assert store.append_event(b, "note", {}) == 5 and store.last_seq(b) == 5


def test_concurrent_claims_on_postgresql_never_share_a_job(postgres_server, tmp_path: Path) -> None:  # noqa: F811
    store = JobStore(database_url(new_database(postgres_server), tmp_path))
    store.create_tables()
    ids = add_jobs(store, 40)

    def drain(worker: str) -> list[str]:
        got = []
        while (c := claims.claim(store, worker, 30, 3)) is not None:
            got.append(c.record.id)
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(drain, [f"w{i}" for i in range(8)]))
    claimed = [job_id for r in results for job_id in r]
    assert sorted(claimed) == ids  # every job once, none twice
    assert sum(1 for r in results if r) >= 2  # they really ran side by side
    store.close()


def test_retention_by_age_and_by_disk_budget(store: JobStore, tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    old = now() - dt.timedelta(days=10)
    for i, (status, finished, size) in enumerate([(DONE, old, 500), (FAILED, old + dt.timedelta(hours=1), 0),
                                                  (DONE, now() - dt.timedelta(days=2), 400),
                                                  (DONE, now() - dt.timedelta(days=1), 300),
                                                  (QUEUED, None, 900)]):
        job_id = f"{i:032x}"
        store.add(JobRecord(id=job_id, status=status, created_at=old, finished_at=finished, disk_bytes=size))
        (root / job_id).mkdir(parents=True)
        (root / job_id / "file").write_bytes(b"x" * size)
    (root / ("f" * 32)).mkdir()  # a folder without a record (a crashed upload)
    assert Retention(store, root).enabled is False
    gone = Retention(store, root, days=7).sweep()
    assert sorted(gone) == [f"{0:032x}", f"{1:032x}"]
    assert not (root / f"{0:032x}").exists() and (root / f"{2:032x}").exists()
    assert store.disk_usage() == 1600
    gone = Retention(store, root, budget=1300).sweep()  # oldest finished first, until it fits
    assert gone == [f"{2:032x}"] and store.disk_usage() == 1200
    gone = Retention(store, root, budget=100).sweep()  # the queued job is never removed
    assert gone == [f"{3:032x}"] and store.get(f"{4:032x}") is not None
    assert Retention(store, root).remove_strays(0.0) == 1 and not (root / ("f" * 32)).exists()


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the table as issue 13's gateway made it
        conn.execute(text("CREATE TABLE jobs (id VARCHAR(32) PRIMARY KEY, status VARCHAR(16), created_at DATETIME, "
                          "started_at DATETIME, finished_at DATETIME, filename VARCHAR(255), title VARCHAR(255), "
                          "options JSON, upload_bytes BIGINT, duration FLOAT, seconds FLOAT, wall_seconds FLOAT, "
                          "notes JSON, stages JSON, artifacts JSON, warnings JSON, error TEXT, error_status INTEGER)"))
        conn.execute(text("INSERT INTO jobs VALUES ('" + "a" * 32 + "', 'done', '2024-01-01 00:00:00', NULL, "
                          "'2024-01-01 00:01:00', 'x.wav', 'x', '{}', 10, 1.0, 1.0, 1.0, '{}', '{}', '[]', '[]', '', 0)"))
    engine.dispose()
    store = JobStore(url)
    store.create_tables()
    record = store.get("a" * 32)
    assert record is not None and record.owner == "" and record.attempts == 0 and record.disk_bytes == 0
    assert store.find(owner="")[1] == 1
    store.close()


def test_retry_after_follows_the_drain_rate() -> None:
    # Jobs take half their audio length; one 4 s song has run 1 s: it ends in about 1 s.
    assert drain_retry_after([0.5, 0.5, 0.6], [(1.0, 4.0)], [4.0]) == 1
    # Two places: the running song ends at 1 s, then the next (4 s of audio, 2 s of work).
    assert drain_retry_after([0.5], [(1.0, 4.0)], [4.0, 4.0], ahead=2) == 3
    # Two slots (or replicas) drain twice as fast as one.
    assert drain_retry_after([1.0], [(0.0, 10.0), (5.0, 10.0)], [10.0, 10.0], ahead=2) == 10
    assert drain_retry_after([1.0], [(0.0, 10.0)], [10.0, 10.0], ahead=2) == 20
    # A slow, long song far from its end: the estimate says so instead of a fixed guess.
    assert drain_retry_after([2.0], [(10.0, 120.0)], []) == 230
    assert drain_retry_after([], [(1.0, 4.0)], []) == 5  # nothing measured yet: soon
    assert drain_retry_after([0.5], [], [4.0]) == 5
