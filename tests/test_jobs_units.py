"""The HTTP job pieces on their own: event log, options, signed links, the SQL job store."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from gateway.auth import Auth
from gateway.events import EventLog
from gateway.options import JobOptions, parse_options
from gateway.store import DONE, FAILED, QUEUED, RUNNING, JobRecord, JobStore, database_url, now
from tabagent.errors import BadConfig


async def test_event_log_replays_follows_and_survives_compaction() -> None:
    log = EventLog()
    log.publish("status", {"status": "running"})
    for k in range(3):
        log.publish("progress", {"stage": "decode", "part": "", "done_seconds": k + 1.0, "total_seconds": 0.0})
        log.publish("notes", {"part": "bass", "final_until": k + 1.0, "notes": [{"pitch": 40}] * (k + 1)})
    got: list[tuple[int, str]] = []

    async def slow_follower() -> None:
        async for ev in log.follow(0, keepalive=0.05):
            if ev is None:
                got.append((0, "keepalive"))
                continue
            got.append((ev.seq, ev.type))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(slow_follower())
    await asyncio.sleep(0.035)  # the follower is part-way through the replay
    log.publish("done", {"status": "done"})
    log.compact()
    await asyncio.wait_for(task, 2)
    seqs = [s for s, t in got if t != "keepalive"]
    assert seqs == sorted(set(seqs)) and got[-1] == (8, "done")  # in order, none twice, the end
    assert log.stages == {"decode": {"done_seconds": 3.0, "total_seconds": 0.0}} and log.notes == {"bass": 6}
    assert [e.type for e in log.events] == ["status", "notes", "notes", "notes", "done"]
    late = [ev.seq async for ev in log.follow(5) if ev is not None]
    assert late == [7, 8]
    with pytest.raises(RuntimeError):
        log.publish("status", {"status": "running"})


async def test_event_log_keepalive_and_close() -> None:
    log = EventLog()
    stream = log.follow(0, keepalive=0.02)
    assert await asyncio.wait_for(anext(stream), 1) is None  # nothing happened: a keepalive
    log.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 1)


def test_options_from_fields() -> None:
    opts = parse_options({"parts": ["bass,guitar"], "tuning": ["bass=drop_d;guitar=D2,A2,D3,G3,B3,E4"],
                          "capo": ["3"], "video": ["on"], "size": ["640x360"], "fps": ["24"],
                          "title": [" Riff "], "stems": ["0"]})
    assert opts.parts == ["bass", "guitar"] and opts.tuning == {"bass": "drop_d", "guitar": "D2,A2,D3,G3,B3,E4"}
    assert opts.capo == {"guitar": 3} and opts.video and not opts.stems
    assert opts.size == (640, 360) and opts.fps == 24 and opts.title == "Riff"
    cfg = opts.to_config("x.wav")
    assert [p.name for p in cfg.parts] == ["bass", "guitar"] and cfg.parts[1].tuning.capo == 3
    assert cfg.video_config.width == 640 and cfg.video
    assert JobOptions.from_dict(opts.to_dict()) == opts
    assert parse_options({}) == JobOptions()
    for bad in ({"parts": [""]}, {"parts": ["guitar,guitar"]}, {"fps": ["0"]}, {"capo": ["guitar=x"]},
                {"tuning": ["bass="]}, {"title": ["t" * 300]}, {"size": ["10x10"]}):
        with pytest.raises(BadConfig):
            parse_options(bad)


def test_signed_links() -> None:
    auth = Auth("k")
    link = auth.link("/v1/jobs/abc/artifacts/tab.txt", now=1_000_000)
    path, _, query = link.partition("?")
    assert path == "/v1/jobs/abc/artifacts/tab.txt" and "exp=" in query and "sig=" in query and "k" not in query
    assert Auth("").link("/x") == "/x" and not Auth("").enabled
    assert auth.link("/a", now=1) != auth.link("/b", now=1) != Auth("other").link("/a", now=1)


def test_job_store_round_trip(tmp_path: Path) -> None:
    assert database_url("", tmp_path) == f"sqlite:///{tmp_path.resolve() / 'jobs.db'}"
    assert database_url("postgres://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql+psycopg2://u@h/db", tmp_path) == "postgresql+psycopg2://u@h/db"
    store = JobStore.from_config("", tmp_path)
    store.create_tables()
    store.create_tables()  # every start: idempotent
    t0 = now()
    for i, status in enumerate((QUEUED, RUNNING, DONE)):
        store.add(JobRecord(id=f"{i:032x}", status=status, created_at=t0 + dt.timedelta(seconds=i),
                            options={"parts": ["bass"]}, upload_bytes=10 * i))
    records, total = store.find()
    assert total == 3 and [r.id for r in records] == [f"{i:032x}" for i in (2, 1, 0)]
    assert records[0].created_at.tzinfo is not None and records[0].options == {"parts": ["bass"]}
    assert [r.status for r in store.unfinished()] == [QUEUED, RUNNING]
    store.update(f"{2:032x}", artifacts=[{"name": "tab.txt", "path": "artifacts/tab.txt", "size": 3,
                                          "content_type": "text/plain"}], notes={"bass": 4})
    done = store.get(f"{2:032x}")
    assert done is not None and done.artifact("tab.txt") and done.artifact("../tab.txt") is None
    store.mark_failed([f"{1:032x}"], "interrupted", 503)
    failed = store.get(f"{1:032x}")
    assert failed is not None and failed.status == FAILED and failed.error_status == 503 and failed.finished_at
    assert store.find(status=FAILED)[1] == 1
    with pytest.raises(ValueError):
        store.update(f"{1:032x}", nonsense=1)
    assert store.delete(f"{1:032x}") and not store.delete(f"{1:032x}")
    store.ping()
    store.close()
