"""HTTP jobs outlive the gateway: a graceful stop and a SIGKILL mid-job, then a restart on the same data.

Finished jobs stay listed with their artifacts; the interrupted job is reported failed
(not gone) and its partial files removed; jobs still queued are run after the restart.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, files_under, follow, gateway_config, sse

from evalkit.examples import make_song
from gateway.job_queue import INTERRUPTED, SHUTDOWN
from launcher.embedded import LocalChain

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
KEY = "restart-key"


@pytest.fixture(scope="module")
async def chain():
    async with LocalChain(video=False) as c:
        yield c


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
                              interrupted: dict, queued: dict, message: str) -> None:
    listed = {j["id"]: j for j in (await c.get("/v1/jobs")).json()["jobs"]}
    assert set(listed) == {done["id"], interrupted["id"], queued["id"]}  # none vanished
    assert listed[done["id"]]["status"] == "done"
    assert await artifacts_of(c, done["id"]) == done_files
    lost = listed[interrupted["id"]]
    assert lost["status"] == "failed" and lost["error"]["message"] == message
    assert lost["finished_at"] is not None and lost["artifacts"] == []
    assert not (data / "jobs" / interrupted["id"]).exists()
    # The job still queued at the stop was stored whole: it runs now.
    events = await follow(c, queued["links"]["events"])
    assert events[-1][0] == "done", events[-1]
    assert set(await artifacts_of(c, queued["id"])) >= {"result.json", "tab.txt"}
    leftovers = {f for f in files_under(data) if "/artifacts/" not in f}
    assert leftovers == set(), leftovers


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback (Debian's binaries); skips without them."""
    bindir = Path("/usr/lib/postgresql/15/bin")
    initdb = shutil.which("initdb") or str(bindir / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(bindir / "pg_ctl")
    if not (Path(initdb).exists() and Path(pg_ctl).exists()):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg (PostgreSQL driver) is not installed")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tabagent-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    db = folder / "db"
    try:
        subprocess.run([*prefix, initdb, "-D", str(db), "-A", "trust", "-U", "tabagent", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True)
        subprocess.run([*prefix, pg_ctl, "-D", str(db), "-l", str(folder / "log"), "-w", "start", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"],
                       check=True, capture_output=True)
        yield f"postgresql://tabagent@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(db), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


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
    # Stopped (grace 0) while `running` ran: it is recorded interrupted, `queued` stays queued.
    async with HttpGateway(config) as gw, gw.client() as c:
        await check_after_restart(c, data, done, done_files, running, queued, SHUTDOWN)
        assert (await c.get("/readyz")).json()["services"]["database"] == "SERVING"
        assert gw.app.state.jobs.store.url.startswith("postgresql+psycopg://" if db_url else "sqlite:///")
    assert (data / "jobs.db").exists() != bool(db_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_gateway(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = open(log, "ab")  # noqa: SIM115 - the child holds it; closed when the test ends
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", cwd=str(REPO), env=env,
                                                stdout=out, stderr=out)
    out.close()
    url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/readyz"
    async with httpx.AsyncClient(timeout=2.0) as c:
        for _ in range(300):
            if proc.returncode is not None:
                raise AssertionError(f"the gateway exited: {log.read_text()[-3000:]}")
            try:
                if (await c.get(url)).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the gateway did not become ready: {log.read_text()[-3000:]}")


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
            await check_after_restart(c, data, done, done_files, running, queued, INTERRUPTED)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
