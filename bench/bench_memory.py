"""Benchmark 5: peak resident memory vs. song length (1, 10, 60 minutes), per process.

    .venv/bin/python bench/bench_memory.py                         # quick: 1 and 10 min, embedded
    .venv/bin/python bench/bench_memory.py --minutes 1 10 60 --split 60   # the full run
    .venv/bin/python bench/bench_memory.py --minutes 1 10 --video  # with the video renderer

Embedded: `tabagent run SONG --no-video` (the whole chain and the client in one process),
as a child process whose exact peak RSS comes from the kernel when it exits
(`wait4`'s ru_maxrss), next to a psutil poll every 0.2 s. Split (`--split MIN`): the
services as separate processes like `tabagent up` (separator, transcriber, gateway, and
the client `tabagent run --gateway`), each one's peak read from /proc (VmHWM) after the
song, and polled. Songs longer than 5 minutes repeat a synthesised 5 minute song; the
60 minute WAV is 635 MB, over the gateway's 512 MiB default upload limit, so the runs set
TABAGENT_MAX_UPLOAD_BYTES to 2 GiB. Video is off unless `--video` (its memory is measured
apart, because rendering an hour of 720p takes far longer than the tabs).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    RssPoller,
    command,
    machine,
    machine_line,
    mib,
    song,
    table,
    vm_hwm,
    write_section,
)

TABAGENT = str(Path(sys.executable).with_name("tabagent"))
ENV = {"TABAGENT_MAX_UPLOAD_BYTES": str(2**31)}
GOAL = 1.5


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a child and return its exact peak RSS in bytes (ru_maxrss)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024


def embedded(path: Path, video: bool) -> dict[str, float]:
    """`tabagent run` in one process; returns wall time, polled and exact peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as out:
        cmd = [TABAGENT, "run", str(path), "--out", out, "-q"] + ([] if video else ["--no-video"])
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=dict(os.environ, **ENV), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        with RssPoller([proc.pid], 0.2) as poll:
            peak = _wait(proc)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"tabagent run failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return {"wall": wall, "peak": peak, "polled": poll.peak[proc.pid]}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(addr: str, timeout: float = 300.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"{addr} did not become SERVING")


def split(path: Path) -> dict[str, dict[str, float]]:
    """The services as separate processes; each one's peak RSS for one song."""
    ports = {name: _port() for name in ("separator", "transcriber", "gateway", "http")}
    addr = {name: f"127.0.0.1:{ports[name]}" for name in ("separator", "transcriber", "gateway")}
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        env = dict(os.environ, **ENV, SEPARATOR_PORT=str(ports["separator"]), SEPARATOR_METRICS_PORT="0",
                   TRANSCRIBER_PORT=str(ports["transcriber"]), TRANSCRIBER_METRICS_PORT="0",
                   GATEWAY_PORT=str(ports["gateway"]), GATEWAY_HTTP_PORT=str(ports["http"]),
                   SEPARATOR_ADDR=addr["separator"], TRANSCRIBER_ADDR=addr["transcriber"], VIDEO_ADDR="",
                   TABAGENT_DATA_DIR=str(Path(tmp) / "data"), TABAGENT_LOG_LEVEL="WARNING")
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in ("separator_svc", "transcriber_svc", "gateway"):
                procs[name] = subprocess.Popen([sys.executable, "-m", name], env=env, cwd=ROOT,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in ("separator", "transcriber", "gateway"):
                _serving(addr[name])
            warm = {name: vm_hwm(p.pid) or 0 for name, p in procs.items()}
            started = time.perf_counter()
            client = subprocess.Popen([TABAGENT, "run", str(path), "--out", str(Path(tmp) / "out"), "-q",
                                       "--gateway", addr["gateway"]], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            with RssPoller([*(p.pid for p in procs.values()), client.pid], 0.2) as poll:
                client_peak = _wait(client)
            wall = time.perf_counter() - started
            if client.returncode != 0:
                raise SystemExit(f"the client failed with {client.returncode}")
            out = {name: {"peak": float(vm_hwm(p.pid) or 0), "polled": float(poll.peak[p.pid]),
                          "warm": float(warm[name])} for name, p in procs.items()}
            out["client"] = {"peak": float(client_peak), "polled": float(poll.peak[client.pid]), "warm": 0.0}
            out["wall"] = {"peak": wall, "polled": 0.0, "warm": 0.0}
            return out
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--split", type=float, nargs="*", default=[],
                        help="also run these lengths (and 1 min) as separate processes")
    parser.add_argument("--video", action="store_true", help="embedded with video (separate table)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    info = machine()
    lengths = sorted(set(args.minutes))
    for m in sorted(set(lengths) | set(args.split) | {1.0}):
        song(m * 60)
    results = {}
    for m in lengths:
        print(f"embedded {m:g} min ...", file=sys.stderr)
        results[m] = embedded(song(m * 60), args.video)
    base = results[min(lengths)]["peak"]
    rows = [[f"{m:g} min", f"{r['wall']:.0f}", f"{m * 60 / r['wall']:.1f}x", mib(r["peak"]), mib(r["polled"]),
             f"**{r['peak'] / base:.2f}x**"] for m, r in results.items()]
    mode = ("`tabagent run` with video, 1280x720: gateway, separator, transcriber, video renderer"
            if args.video else "`tabagent run --no-video`: gateway, separator, transcriber")
    parts = [
        f"### 5. Peak RSS vs. song length{' (with video)' if args.video else ''}",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}. Embedded chain ({mode} and client in one process); "
        "exact peak from the kernel at exit, and the 0.2 s poll.",
        "",
        table(["song", "wall s", "speed", "peak RSS (exact)", "peak RSS (polled)",
               f"vs {min(lengths):g} min"], rows),
    ]
    worst = max(r["peak"] / base for r in results.values())
    parts += ["", f"Largest ratio {worst:.2f}x (goal: within {GOAL}x of the shortest: "
                  f"{'meets' if worst <= GOAL else 'does not meet'})."]
    if args.split:
        split_results = {}
        for m in sorted(set(args.split) | {1.0}):
            print(f"split {m:g} min ...", file=sys.stderr)
            split_results[m] = split(song(m * 60))
        names = ["separator_svc", "transcriber_svc", "gateway", "client"]
        srows = []
        first = split_results[min(split_results)]
        for m, r in split_results.items():
            srows.append([f"{m:g} min", f"{r['wall']['peak']:.0f}"]
                         + [f"{mib(r[n]['peak'])} ({r[n]['peak'] / first[n]['peak']:.2f}x)" for n in names])
        srows.append(["after warm-up, before the song", ""] + [mib(first[n]["warm"]) for n in names[:3]] + ["-"])
        parts += ["", "Separate processes (`python -m separator_svc` etc., like `tabagent up`; peak = "
                      "VmHWM of each process, ratio vs the 1 min run):", "",
                  table(["song", "wall s", *names], srows)]
    text = "\n".join(parts)
    print(text)
    if not args.no_doc:
        write_section("memory-video" if args.video else "memory", text,
                      long=not args.video and (bool(args.split) or max(lengths) > 10))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
