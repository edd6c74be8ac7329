"""Benchmark 8: cold start: process start to ready, `tabagent run` to its first tab event, first vs warm request.

    .venv/bin/python bench/bench_cold_start.py                       # 3 runs of each (make bench)
    .venv/bin/python bench/bench_cold_start.py --runs 5 --baseline af3dcb5

Every figure is the median of `--runs` fresh processes (this machine is shared, so single
runs are noisy):

- each model service on its own (`python -m separator_svc`, `transcriber_svc`,
  `video_svc`): from the spawn to its gRPC port answering (interpreter, imports, server)
  and to health SERVING (its model loaded and warmed);
- `tabagent up`: from the spawn to every service's health SERVING, the gateway's gRPC
  health SERVING and its HTTP `/readyz` answering 200; then the same 10 s song twice
  through that gateway (video on): the first request against the second, stage by stage
  (first stems, first transcription progress, first tab event, first video fragment,
  end). The warm-models contract says the first request pays no load and no JIT, so the
  ratio should be near 1;
- `tabagent run` on a fresh process (video on, as a user types it): from the spawn to
  the chain being ready, to the first tab event, to the last artifact and to the exit.

`--baseline REV` also measures the code of git revision REV (extracted with `git archive`
into a temporary folder and run with the same interpreter and packages), alternating
runs with the working tree's, so the before/after ratios come from one run on one
machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, command, machine, machine_line, process_song, song, table, write_section  # noqa: E402

SERVICES = {
    "separator": ("separator_svc", "SEPARATOR", "tabagent.v1.Separator"),
    "transcriber": ("transcriber_svc", "TRANSCRIBER", "tabagent.v1.Transcriber"),
    "video": ("video_svc", "VIDEO", "tabagent.v1.VideoRenderer"),
}
GATEWAY = "tabagent.v1.Gateway"
# What a fresh interpreter costs with nothing, and with torch (which the separator still
# imports on its DSP fallback): the floor under every figure, and what is left to cut.
REFERENCES = {"reference: bare interpreter": "pass", "reference: import torch": "import torch"}
TIMEOUT = 300.0

# Runs `tabagent run` (launcher.cli.main, what the console script calls) in a fresh
# interpreter and writes when the first events came, in seconds from the parent's spawn.
RUN_CHILD = r"""
import json, os, sys, time
t0 = float(os.environ["BENCH_T0"])
marks = {"interpreter": time.time() - t0}
import launcher.cli, launcher.progress
marks["cli imported"] = time.time() - t0
update = launcher.progress.StageBars.update
def timed(self, event):
    now = time.time() - t0
    kind = type(event).__name__
    marks.setdefault("first event", now)
    if kind == "Notes" and event.notes:
        marks.setdefault("first tab", now)
    if kind == "Done":
        marks.setdefault("done", now)
    return update(self, event)
launcher.progress.StageBars.update = timed
code = launcher.cli.main(sys.argv[1:])
marks["main returned"] = time.time() - t0
with open(os.environ["BENCH_MARKS"], "w") as f:
    json.dump(marks, f)
sys.exit(code)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def fmt(values: list[float]) -> str:
    """The median, and the spread of the runs."""
    good = [v for v in values if v == v]
    if not good:
        return "-"
    return f"{median(good):.2f}" + (f" ({min(good):.2f}-{max(good):.2f})" if len(good) > 1 else "")


class Tree:
    """A copy of the code to run: the working tree, or a git revision extracted to a folder."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root

    @classmethod
    def checkout(cls, rev: str, folder: Path) -> Tree:
        label = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                               capture_output=True, text=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        return cls(f"baseline {label}", folder)

    def spawn(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """A fresh interpreter in this tree (its folder first on sys.path, as `-m` puts it)."""
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, *args], cwd=self.root, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (the services drain), then kill what is left of the group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def base_env(work: Path) -> dict[str, str]:
    """The environment of a measured process: its own ports, data and no metrics servers."""
    env = dict(os.environ)
    for name in ("GATEWAY_ADDR", "SEPARATOR_ADDR", "TRANSCRIBER_ADDR", "VIDEO_ADDR", "TABAGENT_API_KEY"):
        env.pop(name, None)
    env.update(TABAGENT_LOG_LEVEL="INFO", TABAGENT_DATA_DIR=str(work / "data"), PYTHONUNBUFFERED="1",
               SEPARATOR_METRICS_PORT="0", TRANSCRIBER_METRICS_PORT="0", VIDEO_METRICS_PORT="0",
               GATEWAY_METRICS_PORT="0")
    return env


def wait_port(port: int, proc: subprocess.Popen[bytes], started: float) -> float:
    """Seconds from `started` until something listens on `port`."""
    while True:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return time.perf_counter() - started
        if proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} before listening on {port}")
        if time.perf_counter() - started > TIMEOUT:
            raise SystemExit(f"nothing listened on {port} within {TIMEOUT:.0f} s")
        time.sleep(0.005)


async def wait_serving(port: int, service: str, started: float) -> float:
    """Seconds from `started` until the gRPC health of `service` at `port` says SERVING (Watch, no polling)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
               ("grpc.max_reconnect_backoff_ms", 50)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                call = stub.Watch(health_pb2.HealthCheckRequest(service=service), wait_for_ready=True,
                                  timeout=TIMEOUT)
                async for reply in call:
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - started
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise SystemExit(f"{service} not SERVING within {TIMEOUT:.0f} s") from None
                await asyncio.sleep(0.01)


async def wait_readyz(port: int, started: float) -> float:
    """Seconds from `started` until GET /readyz answers 200."""
    url = f"http://127.0.0.1:{port}/readyz"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    while not await asyncio.to_thread(ready):
        if time.perf_counter() - started > TIMEOUT:
            raise SystemExit(f"/readyz not 200 within {TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


# -- the measurements ---------------------------------------------------------------------------
def service_start(tree: Tree, *, name: str, work: Path) -> dict[str, float]:
    """One model service alone: spawn -> port open -> SERVING."""
    module, prefix, full_name = SERVICES[name]
    port = free_port()
    env = base_env(work)
    env.update({f"{prefix}_PORT": str(port), f"{prefix}_HOST": "127.0.0.1"})
    started = time.perf_counter()
    proc = tree.spawn(["-m", module], env, work / f"{name}.log")
    try:
        listening = wait_port(port, proc, started)
        serving = asyncio.run(wait_serving(port, full_name, started))
    finally:
        stop(proc)
    return {"listening": listening, "serving": serving}


def reference(tree: Tree, *, code: str) -> dict[str, float]:
    """A fresh interpreter running `code`: spawn -> done, and done -> exit (teardown)."""
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport time\nprint(repr(time.time()))"],
                          cwd=tree.root, capture_output=True, text=True, check=True)
    exited = time.time()
    finished = float(done.stdout.strip().splitlines()[-1])
    return {"done": finished - t0, "teardown": exited - finished}


def up_start(tree: Tree, work: Path, clip: Path) -> dict[str, float]:
    """`tabagent up`: spawn -> each service SERVING -> gateway SERVING -> /readyz 200; then two songs."""
    env = base_env(work)
    ports = {name: free_port() for name in ("separator", "transcriber", "video", "gateway", "http")}
    env.update(SEPARATOR_PORT=str(ports["separator"]), TRANSCRIBER_PORT=str(ports["transcriber"]),
               VIDEO_PORT=str(ports["video"]), GATEWAY_PORT=str(ports["gateway"]),
               GATEWAY_HTTP_PORT=str(ports["http"]))
    started = time.perf_counter()
    proc = tree.spawn(["-m", "launcher", "up"], env, work / "up.log")
    out: dict[str, float] = {}
    try:
        async def ready() -> None:
            waits = {name: wait_serving(ports[name], SERVICES[name][2], started) for name in SERVICES}
            waits["gateway"] = wait_serving(ports["gateway"], GATEWAY, started)
            waits["/readyz"] = wait_readyz(ports["http"], started)
            out.update(zip(waits, await asyncio.gather(*waits.values()), strict=True))

        asyncio.run(ready())
        for label in ("1st", "2nd"):
            r = asyncio.run(process_song(f"127.0.0.1:{ports['gateway']}", clip, video=True, timeout=TIMEOUT))
            if r.error:
                raise SystemExit(f"tabagent up: the {label} song failed: {r.error}")
            for key, stage in (("first stems", "progress:separate"), ("first transcribe", "progress:transcribe"),
                               ("first tab", "tab"), ("first video", "videofragment")):
                out[f"{label} {key}"] = r.first.get(stage, float("nan"))
            out[f"{label} total"] = r.total
    finally:
        stop(proc)
    return out


def run_once(tree: Tree, work: Path, clip: Path) -> dict[str, float]:
    """`tabagent run CLIP` in a fresh process: spawn -> chain ready -> first tab -> done -> exit."""
    env = base_env(work)
    marks_file = work / "marks.json"
    marks_file.unlink(missing_ok=True)
    env.update(BENCH_MARKS=str(marks_file))
    log = work / "run.log"
    log.unlink(missing_ok=True)
    out_dir = work / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    env["BENCH_T0"] = repr(time.time())
    started = time.perf_counter()
    proc = tree.spawn(["-c", RUN_CHILD, "run", str(clip), "--out", str(out_dir)], env, log)
    code = proc.wait(TIMEOUT)
    exited = time.perf_counter() - started
    if code != 0 or not marks_file.exists():
        raise SystemExit(f"tabagent run exited with {code}:\n{log.read_text()[-3000:]}")
    marks = json.loads(marks_file.read_text())
    text = log.read_text()
    # "chain ready in X s" is the CLI's own clock around LocalChain.start().
    ready_in = next((float(line.split("chain ready in ")[1].split(" s")[0]) for line in text.splitlines()
                     if "chain ready in " in line), float("nan"))
    return {"interpreter + CLI imports": marks["cli imported"], "chain start": ready_in,
            "first tab": marks.get("first tab", float("nan")), "done": marks.get("done", float("nan")),
            "exit": exited}


# -- the report ---------------------------------------------------------------------------------
def collect(trees: list[Tree], runs: int, what: str, measure: Callable[[Tree], dict[str, float]]) -> dict[str, dict[str, list[float]]]:
    """`runs` measurements per tree, alternating trees run by run."""
    results: dict[str, dict[str, list[float]]] = {t.name: {} for t in trees}
    for i in range(runs):
        for tree in trees:
            r = measure(tree)
            print(f"  {what} run {i + 1} {tree.name}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), flush=True)
            for k, v in r.items():
                results[tree.name].setdefault(k, []).append(v)
    return results


def ratio(before: list[float], after: list[float]) -> str:
    a, b = median(after), median(before)
    return f"**{b / a:.2f}x**" if a and a == a and b == b else "-"


def compare_table(results: dict[str, dict[str, list[float]]], keys: list[str], first: str) -> list[str]:
    """Rows: key | each tree's median (range) | before/after ratio when there are two trees."""
    names = list(results)
    rows = []
    for key in keys:
        row = [key, *(fmt(results[n].get(key, [])) for n in names)]
        if len(names) == 2:
            # The references run the same code in both trees: no before/after there.
            same = key.startswith("reference")
            row.append("-" if same else ratio(results[names[1]].get(key, []), results[names[0]].get(key, [])))
        rows.append(row)
    header = [first, *(f"{n} s" for n in names)] + (["before / after"] if len(names) == 2 else [])
    return [table(header, rows)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement (medians)")
    parser.add_argument("--baseline", default="", help="also measure this git revision, alternating runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the song sent")
    parser.add_argument("--only", default="services,up,run", help="comma-separated: services, up, run")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    only = set(args.only.split(","))
    info = machine()
    clip = song(args.seconds, seed=1)
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        work = Path(tmp)
        trees = [Tree("this tree", ROOT)]
        if args.baseline:
            trees.append(Tree.checkout(args.baseline, work / "baseline"))
        sections: list[str] = []
        if "services" in only:
            rows: dict[str, dict[str, list[float]]] = {t.name: {} for t in trees}
            for name in SERVICES:
                got = collect(trees, args.runs, name, functools.partial(service_start, name=name, work=work))
                for tree_name, values in got.items():
                    rows[tree_name][f"{name}: port open"] = values["listening"]
                    rows[tree_name][f"{name}: SERVING"] = values["serving"]
            keys = [f"{n}: {k}" for n in SERVICES for k in ("port open", "SERVING")]
            for label, code in REFERENCES.items():
                got = collect(trees, args.runs, label, functools.partial(reference, code=code))
                for tree_name, values in got.items():
                    rows[tree_name][label] = values["done"]
                    rows[tree_name][f"{label}: exit after"] = values["teardown"]
                keys += [label, f"{label}: exit after"]
            sections += ["Each model service started alone (`python -m <service>`), seconds from the spawn; "
                         "the references are a fresh interpreter doing nothing and importing torch, from the "
                         "spawn to done and from done to the process's exit (teardown):", "",
                         *compare_table(rows, keys, "service"), ""]
        if "up" in only:
            got = collect(trees, args.runs, "tabagent up", lambda t: up_start(t, work, clip))
            keys = ["separator", "transcriber", "video", "gateway", "/readyz"]
            sections += ["`tabagent up` (four processes at once), seconds from the spawn until SERVING "
                         "(gRPC health) and until `/readyz` answers 200:", "",
                         *compare_table(got, keys, "`tabagent up`"), ""]
            stage_keys = ["first stems", "first transcribe", "first tab", "first video", "total"]
            rows2 = []
            for tree in trees:
                values = got[tree.name]
                for key in stage_keys:
                    first, second = values.get(f"1st {key}", []), values.get(f"2nd {key}", [])
                    rows2.append([tree.name, key, fmt(first), fmt(second), ratio(first, second)])
            sections += [f"The first and the second {args.seconds:g} s song (video on) through that gateway, "
                         "seconds from the client's call (first / second near 1: the first request pays "
                         "no load or JIT):", "",
                         table(["tree", "event", "1st request s", "2nd request s", "1st / 2nd"], rows2), ""]
        if "run" in only:
            got = collect(trees, args.runs, "tabagent run", lambda t: run_once(t, work, clip))
            keys = ["interpreter + CLI imports", "chain start", "first tab", "done", "exit"]
            sections += [f"`tabagent run` on a {args.seconds:g} s song (video on) in a fresh process, seconds "
                         "from the spawn (chain start: the CLI's own clock around starting and warming the "
                         "embedded services):", "",
                         *compare_table(got, keys, "`tabagent run`"), ""]
    text = "\n".join([
        "### 8. Cold start: process start to ready, and the first request",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; shipped defaults (no Demucs or diffusion weights: DSP "
        f"separator, procedural video background); medians of {args.runs} fresh processes each "
        "(range in brackets): the machine is shared, so single runs are noisy.",
        "",
        *sections,
    ]).rstrip()
    print(text)
    if not args.no_doc:
        write_section("cold-start", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
