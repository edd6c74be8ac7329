"""A throw-away PostgreSQL server for the tests (Debian's `postgresql` binaries), and gateway processes.

`postgres_url` starts one cluster per test session on a free loopback port with initdb
and pg_ctl (as the `postgres` user when the tests run as root: the server refuses root),
gives each test module a fresh database, and skips with the reason when the binaries,
the driver or a non-root user are missing. scripts/install.sh installs the `postgresql`
package where it can (a Debian machine, as root), so CI runs these tests.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binaries() -> tuple[str, str, str] | None:
    """initdb, pg_ctl and psql of the newest PostgreSQL installed, or None."""
    found = [shutil.which(n) for n in ("initdb", "pg_ctl", "psql")]
    if all(found):
        return found[0], found[1], found[2]  # type: ignore[return-value]
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True):
        names = [str(Path(bindir) / n) for n in ("initdb", "pg_ctl", "psql")]
        if all(Path(n).exists() for n in names):
            return names[0], names[1], names[2]
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, list[str], str]]:
    """(base URL without a database, command prefix, psql) of a server running for the session."""
    binaries = _binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian package 'postgresql'; "
                    "scripts/install.sh installs it as root)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg (PostgreSQL driver) is not installed")
    initdb, pg_ctl, psql = binaries
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tabagent-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    db = folder / "db"
    try:
        try:
            subprocess.run([*prefix, initdb, "-D", str(db), "-A", "trust", "-U", "tabagent", "--no-sync",
                            "-E", "UTF8"], check=True, capture_output=True)
            subprocess.run([*prefix, pg_ctl, "-D", str(db), "-l", str(folder / "log"), "-w", "start", "-o",
                            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                            "-c max_connections=200"], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"PostgreSQL could not start: {exc.stderr.decode(errors='replace')[-500:]}")
        yield f"postgresql://tabagent@127.0.0.1:{port}", prefix, psql
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(db), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(server: tuple[str, list[str], str]) -> str:
    """The URL of a fresh, empty database on a `postgres_server`."""
    base, _, psql = server
    name = f"t_{uuid.uuid4().hex[:12]}"
    subprocess.run([psql, f"{base}/postgres", "-q", "-c", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    return f"{base}/{name}"


@pytest.fixture(scope="module")
def postgres_url(postgres_server: tuple[str, list[str], str]) -> str:
    """A fresh, empty database on the session's server (one per test module)."""
    return new_database(postgres_server)


async def start_gateway(env: dict[str, str], log: Path, timeout: float = 60.0) -> asyncio.subprocess.Process:
    """`python -m gateway` with `env`, once its /readyz answers 200 (its output appended to `log`)."""
    out = open(log, "ab")  # noqa: SIM115 - the child holds it; closed when the test ends
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", cwd=str(REPO), env=env,
                                                stdout=out, stderr=out)
    out.close()
    url = f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/readyz"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=2.0) as c:
        while loop.time() < deadline:
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


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """Kill a gateway process if it still runs."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
