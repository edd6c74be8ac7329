"""HTTP jobs outlive the gateway: a graceful stop and a SIGKILL mid-job, then a restart on the same data.

Finished jobs stay listed with their artifacts; the interrupted job runs again from its
stored upload (a graceful stop puts it back in the queue without counting the attempt; a
crash counts it, and followers get a `restart` event) and its partial files are removed;
jobs still queued are run after the restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, files_under, follow, gateway_config, sse
from pg_fixtures import free_port, postgres_server, postgres_url, start_gateway  # noqa: F401 - fixtures

from evalkit.examples import make_song
from launcher.embedded import LocalChain

pytestmark = pytest.mark.timeout(300)

KEY = "restart-key"


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("restart-songs")
    return {"short": write_audio(d / "short.flac", make_song(3.0, seed=31).mix),
            "long": write_audio(d / "long.wav", make_song(30.0, bpm=120.0, seed=32).mix)}


async def post(client: httpx.AsyncClient, path: Path) -> dict:
    resp = await client.post("/v1/jobs", files={"file": (path.name, path.read_bytes())})
    assert resp.status_code == 202, resp.text
    return resp.json()


async def until_progress(client: httpx.AsyncClient, job: dict) -> None:
    async for event, _, _ in sse(client, job["links"]["events"]):
        if event == "progress":
            return
    raise AssertionError("the job ended before any progress")


async def artifacts_of(client: httpx.AsyncClient, job_id: str) -> dict[str, bytes]:
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    out = {}
    for a in job["artifacts"]:
        resp = await client.get(a["url"])
        assert resp.status_code == 200
        out[a["name"]] = resp.content
    return out


async def check_after_restart(c: httpx.AsyncClient, data: Path, done: dict, done_files: dict[str, bytes],
                              interrupted: dict, queued: dict, attempts: int) -> None:
    listed = {j["id"]: j for j in (await c.get("/v1/jobs")).json()["jobs"]}
    assert set(listed) == {done["id"], interrupted["id"], queued["id"]}  # none vanished
    assert listed[done["id"]]["status"] == "done"
    assert await artifacts_of(c, done["id"]) == done_files
    # The interrupted job runs again from its stored upload, then the one still queued.
    events = await follow(c, interrupted["links"]["events"])
    assert events[-1][0] == "done", events[-1]
    kinds = [e for e, _ in events]
    # Followers are told to forget the partial output of the stopped attempt.
    assert kinds.count("done") == 1 and kinds.count("restart") == 1
    assert kinds.index("restart") < kinds.index("part")
    again = (await c.get(f"/v1/jobs/{interrupted['id']}")).json()
    assert again["attempts"] == attempts and again["error"] is None
    assert set(await artifacts_of(c, interrupted["id"])) >= {"result.json", "tab.txt"}
    events = await follow(c, queued["links"]["events"])
    assert events[-1][0] == "done", events[-1]
    assert set(await artifacts_of(c, queued["id"])) >= {"result.json", "tab.txt"}
    leftovers = {f for f in files_under(data) if "/artifacts/" not in f}
    assert leftovers == set(), leftovers


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_graceful_stop_mid_job_then_restart(chain: LocalChain, songs: dict[str, Path], tmp_path: Path,
                                                  database: str, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    db_url = request.getfixturevalue("postgres_url") if database == "postgresql" else ""
    config = gateway_config(chain, data, http_max_running=1, http_max_backlog=4, db_url=db_url)
    async with HttpGateway(config) as gw, gw.client() as c:
        done = await post(c, songs["short"])
        assert (await follow(c, done["links"]["events"]))[-1][0] == "done"
        done_files = await artifacts_of(c, done["id"])
        running = await post(c, songs["long"])
        await until_progress(c, running)
        queued = await post(c, songs["short"])
        assert (await c.get(f"/v1/jobs/{queued['id']}")).json()["status"] == "queued"
    # Stopped (grace 0) while `running` ran: it goes back to the queue, `queued` stays queued.
    async with HttpGateway(config) as gw, gw.client() as c:
        await check_after_restart(c, data, done, done_files, running, queued, attempts=1)
        assert (await c.get("/readyz")).json()["services"]["database"] == "SERVING"
        assert gw.app.state.jobs.store.url.startswith("postgresql+psycopg://" if db_url else "sqlite:///")
    assert (data / "jobs.db").exists() != bool(db_url)


async def test_sigkill_mid_job_then_restart(chain: LocalChain, songs: dict[str, Path], tmp_path: Path) -> None:
    """`python -m gateway` killed with SIGKILL while a job runs, then started again."""
    data = tmp_path / "data"
    port = free_port()
    env = {**os.environ, "SEPARATOR_ADDR": chain.addrs["separator"], "TRANSCRIBER_ADDR": chain.addrs["transcriber"],
           "VIDEO_ADDR": "", "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": "0", "GATEWAY_HTTP_PORT": str(port),
           "GATEWAY_METRICS_PORT": "0", "TABAGENT_DATA_DIR": str(data), "TABAGENT_DB_URL": "",
           "TABAGENT_API_KEY": KEY, "TABAGENT_HTTP_MAX_RUNNING": "1", "TABAGENT_HTTP_MAX_BACKLOG": "4",
           "TABAGENT_LOG_LEVEL": "INFO", "TABAGENT_SERVICE_TOKEN": chain.token}
    log = tmp_path / "gateway.log"
    headers = {"Authorization": f"Bearer {KEY}"}
    proc = await start_gateway(env, log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
            done = await post(c, songs["short"])
            assert (await follow(c, done["links"]["events"]))[-1][0] == "done"
            done_files = await artifacts_of(c, done["id"])
            running = await post(c, songs["long"])
            await until_progress(c, running)
            queued = await post(c, songs["short"])
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert (data / "jobs" / running["id"]).exists()  # what a crash leaves: partial files
        proc = await start_gateway(env, log)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as c:
            await check_after_restart(c, data, done, done_files, running, queued, attempts=2)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
