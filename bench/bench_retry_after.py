"""A 429's Retry-After against how long the HTTP queue really took to free a place.

    .venv/bin/python bench/bench_retry_after.py                 # 8 refusals, 4 s songs
    .venv/bin/python bench/bench_retry_after.py --refusals 12 --seconds 8

A gateway with one running slot and a backlog of one (the HTTP API over the embedded
chain): the client keeps uploading the same song; at each 429 it notes the Retry-After,
what the previous estimate (issue 13's: the mean time of the last jobs per running slot,
30 s per slot before any had finished) would have said at that moment, and then retries
every 0.1 s until an upload is accepted: the real wait. The ratio said / waited is 1 for a
perfect estimate; the table shows both estimates' mean ratio and the worst.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command, machine, machine_line, run, song, table, write_section  # noqa: E402

OLD_DEFAULT_JOB_SECONDS = 30.0


def old_estimate(walls: list[float], slots: int) -> int:
    """Issue 13's Retry-After: the mean of the last 20 jobs' wall time per running slot."""
    mean = sum(walls[-20:]) / len(walls[-20:]) if walls else OLD_DEFAULT_JOB_SECONDS
    return int(min(600, max(1, math.ceil(mean / slots))))


async def measure(refusals: int, seconds: float) -> list[tuple[int, int, float]]:
    import httpx

    from gateway.config import GatewayConfig
    from gateway.downstream import Downstream
    from gateway.http_api.app import create_app
    from gateway.http_api.server import HttpServer, bind_http
    from launcher.embedded import LocalChain

    path = song(seconds, seed=3)
    body = path.read_bytes()
    rows: list[tuple[int, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-retry-") as data:
        async with LocalChain(video=False) as chain:
            config = GatewayConfig(separator_addr=chain.addrs["separator"], transcriber_addr=chain.addrs["transcriber"],
                                   data_dir=data, http_max_running=1, http_max_backlog=1,
                                   service_token=chain.token)
            downstream = Downstream(config)
            app = create_app(config, downstream)
            sock = bind_http("127.0.0.1", 0)
            server = HttpServer(app, sock, graceful_seconds=1)
            task = asyncio.create_task(server.run())
            while not server.server.started:
                await asyncio.sleep(0.02)
            walls: list[float] = []
            seen: set[str] = set()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as c:

                async def post() -> httpx.Response:
                    return await c.post("/v1/jobs", files={"file": (path.name, body)})

                async def note_walls() -> None:
                    for j in (await c.get("/v1/jobs", params={"status": "done", "limit": 500})).json()["jobs"]:
                        if j["id"] not in seen:
                            seen.add(j["id"])
                            walls.append(j["wall_seconds"])

                while len(rows) < refusals:
                    resp = await post()
                    if resp.status_code == 202:
                        continue
                    assert resp.status_code == 429, resp.text
                    await note_walls()
                    said, old = int(resp.headers["retry-after"]), old_estimate(walls, 1)
                    t0 = time.monotonic()
                    while (await post()).status_code == 429:
                        await asyncio.sleep(0.1)
                    rows.append((said, old, time.monotonic() - t0))
                    print(f"Retry-After {said} s (old estimate {old} s); a place freed after "
                          f"{rows[-1][2]:.1f} s", flush=True)
            await server.drain(0.0)
            await task
            await downstream.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refusals", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="song length")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    info = machine()
    rows = run(measure(args.refusals, args.seconds))
    new_ratio = [said / max(w, 0.5) for said, _, w in rows]
    old_ratio = [old / max(w, 0.5) for _, old, w in rows]
    text = "\n".join([
        "### Retry-After of a busy HTTP queue",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; one running slot, backlog 1, {args.seconds:g} s songs on the embedded "
        "chain; ratio = Retry-After / the real wait until an upload was accepted (1 is exact).",
        "",
        table(["refusal", "Retry-After (s)", "old estimate (s)", "real wait (s)"],
              [[i + 1, said, old, f"{w:.1f}"] for i, (said, old, w) in enumerate(rows)]),
        "",
        table(["estimate", "mean ratio", "worst ratio"],
              [["drain-based (now)", f"**{statistics.mean(new_ratio):.2f}**",
                f"{max(new_ratio, key=lambda r: abs(math.log(r))):.2f}"],
               ["issue 13's (mean job time per slot; 30 s before any)", f"{statistics.mean(old_ratio):.2f}",
                f"{max(old_ratio, key=lambda r: abs(math.log(r))):.2f}"]]),
    ])
    print(text)
    if not args.no_doc:
        write_section("retry-after", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
