"""Two gateway processes share one PostgreSQL job queue and one data folder; one is SIGKILLed mid-song.

Jobs are uploaded to both; either gateway runs any of them (FOR UPDATE SKIP LOCKED); the
killed gateway's running jobs are restarted by the survivor once their lease runs out;
every job ends exactly once, done, and its events and artifacts are served by the
survivor, whichever gateway ran it. "Exactly once" is checked three ways: one end event
per job, one `running` status per start (1, or 2 for the killed gateway's jobs), and the
separator (in this test's process) completing between n and n + restarted separations.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import write_audio
from http_fixtures import follow, sse
from pg_fixtures import (  # noqa: F401 - fixtures
    free_port,
    new_database,
    postgres_server,
    postgres_url,
    start_gateway,
    stop_process,
)

from evalkit.examples import make_song
from gateway.store import RUNNING, JobStore, database_url
from launcher.embedded import LocalChain

pytestmark = pytest.mark.timeout(600)

KEY = "replicas-key"
LEASE = 6.0


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("replicas") / "song.wav", make_song(4.0, seed=51).mix)


@pytest.fixture(scope="module")
def long_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first job's song: long enough that gateway a is surely mid-song when it is killed."""
    return write_audio(tmp_path_factory.mktemp("replicas-long") / "long.wav", make_song(30.0, seed=52).mix)


def gateway_env(chain: LocalChain, name: str, db_url: str, data: Path, backlog: int) -> dict[str, str]:
    return {**os.environ, "SEPARATOR_ADDR": chain.addrs["separator"], "TRANSCRIBER_ADDR": chain.addrs["transcriber"],
            "VIDEO_ADDR": "", "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "0", "GATEWAY_HTTP_PORT": str(free_port()),
            "GATEWAY_METRICS_PORT": "0", "TABAGENT_DATA_DIR": str(data), "TABAGENT_DB_URL": db_url,
            "TABAGENT_API_KEY": KEY, "TABAGENT_HTTP_MAX_RUNNING": "2", "TABAGENT_HTTP_MAX_BACKLOG": str(backlog),
            "TABAGENT_JOB_LEASE_SECONDS": str(LEASE), "TABAGENT_JOB_POLL_SECONDS": "0.5",
            "POD_NAME": f"gw-{name}", "TABAGENT_LOG_LEVEL": "INFO", "TABAGENT_SERVICE_TOKEN": chain.token}


def logs(folder: Path) -> str:
    """The end of both gateways' logs (for a failure's message)."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(folder.glob("gateway-*.log")))


def separations(chain: LocalChain) -> float:
    """Separator streams this test's separator finished with OK."""
    return chain.metrics["separator"].registry.get_sample_value(
        "tabagent_requests_total", {"service": "separator", "method": "Separate", "code": "OK"}) or 0.0


async def kill_mid_song(client: httpx.AsyncClient, store: JobStore, proc: asyncio.subprocess.Process,
                        uploaded: asyncio.Event) -> None:
    """SIGKILL the gateway `client` talks to while it transcribes a song: at a live transcribe
    progress event (the stream starts after what the store already holds), before 3/4 of it,
    once every upload is in (a kill mid-upload would only cut that request)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        running = [r for r in store.unfinished() if r.status == RUNNING and r.worker.startswith("gw-a:")]
        for record in sorted(running, key=lambda r: -(r.duration or 0)):  # the long song first
            after = store.last_seq(record.id)
            async for event, data, _ in sse(client, f"/v1/jobs/{record.id}/events", params={"after": after}):
                if event in ("done", "failed", "cancelled"):
                    break
                if event == "progress" and data["stage"] == "transcribe" and uploaded.is_set() \
                        and data["done_seconds"] < 0.75 * (record.duration or 0):
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("gateway a never transcribed a song while the test watched")


async def two_gateways_one_killed(chain: LocalChain, db_url: str, song: Path, long_song: Path, tmp_path: Path,
                                  n_jobs: int) -> None:
    data = tmp_path / "shared-data"
    envs = {name: gateway_env(chain, name, db_url, data, n_jobs) for name in ("a", "b")}
    procs = dict(zip(envs, await asyncio.gather(*(start_gateway(env, tmp_path / f"gateway-{name}.log")
                                                  for name, env in envs.items())), strict=True))
    store = JobStore(database_url(db_url, data))
    separated_before = separations(chain)
    headers = {"Authorization": f"Bearer {KEY}"}
    urls = {name: f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}" for name, env in envs.items()}
    try:
        async with httpx.AsyncClient(base_url=urls["a"], headers=headers, timeout=60) as a, \
                httpx.AsyncClient(base_url=urls["b"], headers=headers, timeout=60) as b:
            jobs = []
            uploaded = asyncio.Event()
            killed: asyncio.Task[None] | None = None
            for i in range(n_jobs):  # uploaded to both gateways in turn; the first (long) one to a,
                path = long_song if i == 0 else song  # which claims it at once (b looks every 0.5 s)
                resp = await (a if i % 2 == 0 else b).post("/v1/jobs", files={"file": (path.name, path.read_bytes())})
                assert resp.status_code == 202, resp.text
                jobs.append(resp.json()["id"])
                if killed is None:  # watch gateway a from the start, while the rest is uploaded
                    killed = asyncio.create_task(kill_mid_song(a, store, procs["a"], uploaded))
            uploaded.set()
            assert killed is not None
            await killed
            orphans = {r.id for r in store.unfinished() if r.status == RUNNING and r.worker.startswith("gw-a:")}
            assert orphans, "gateway a was killed mid-song, yet no job of it was left running"
            # The survivor serves every job's events to the end, whichever gateway ran it.
            ends = await asyncio.wait_for(asyncio.gather(*(follow(b, f"/v1/jobs/{j}/events") for j in jobs)), 300)
            assert [e[-1][0] for e in ends] == ["done"] * n_jobs, logs(tmp_path)
            for job_id in jobs:
                record = store.get(job_id)
                assert record is not None and record.status == "done"
                stored = store.events(job_id)
                kinds = [e.type for e in stored]
                starts = [e for e in stored if e.type == "status" and e.data["status"] == "running"]
                assert sum(k in ("done", "failed", "cancelled") for k in kinds) == 1, (kinds, logs(tmp_path))
                assert len(starts) == record.attempts == (2 if job_id in orphans else 1), \
                    (job_id, kinds, orphans, logs(tmp_path))
                if job_id in orphans:
                    restart = next(e for e in stored if e.type == "restart")
                    assert "gw-a:" in restart.data["reason"] and "lease" in restart.data["reason"]
                    assert record.worker.startswith("gw-b:")
                doc = await b.get(f"/v1/jobs/{job_id}/artifacts/result.json")
                assert doc.status_code == 200 and set(json.loads(doc.content)["parts"]) == {"guitar", "bass"}
            separated = separations(chain) - separated_before
            assert n_jobs <= separated <= n_jobs + len(orphans), (separated, n_jobs, orphans)
            listed = (await b.get("/v1/jobs", params={"limit": 500})).json()
            assert listed["total"] == n_jobs
        await stop_process(procs["b"])
        leftovers = [p for p in data.rglob("*") if p.is_file() and "artifacts" not in p.parts]
        assert leftovers == []
    finally:
        store.close()
        for proc in procs.values():
            await stop_process(proc)


async def test_two_gateways_share_the_queue_and_take_over_a_killed_ones_jobs(
        chain: LocalChain, postgres_url: str, song: Path, long_song: Path, tmp_path: Path) -> None:  # noqa: F811
    await two_gateways_one_killed(chain, postgres_url, song, long_song, tmp_path, n_jobs=6)


@pytest.mark.slow
async def test_twenty_jobs_two_gateways_one_killed(chain: LocalChain, postgres_server, song: Path,  # noqa: F811
                                                   long_song: Path, tmp_path: Path) -> None:
    await two_gateways_one_killed(chain, new_database(postgres_server), song, long_song, tmp_path, n_jobs=20)
