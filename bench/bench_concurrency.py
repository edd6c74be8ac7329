"""Benchmark 4: throughput with 1, 2, 4, 8 concurrent songs, peak memory, and refusals past the limit.

    .venv/bin/python bench/bench_concurrency.py                   # quick: 30 s songs, CPU settings
    .venv/bin/python bench/bench_concurrency.py --full-demucs     # also full-size HTDemucs, batch 1 vs 4

Each configuration (environment variables of the services) runs in its own child process
holding a warm embedded chain (`LocalChain`, no video); the child sends 1, 2, 4 and 8
copies of a 30 s song at once through the SDK and reports, per level, the wall time,
the throughput (song seconds per wall second), errors, and its own peak resident set;
the parent also reads the child's kernel high-water mark (VmHWM). Songs past the
gateway's limits wait in its queue. The overload run lowers the gateway's limits
(GATEWAY_MAX_STREAMS=2, GATEWAY_MAX_QUEUE=2), sends 8 songs at once with client retries
off, and measures how fast the refused callers hear RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RssPoller,
    command,
    machine,
    machine_line,
    mib,
    process_song,
    run,
    song,
    table,
    write_section,
)

# "defaults": as shipped (TRANSCRIBER_THREADS=1, TRANSCRIBER_MAX_BATCH=4); the others
# switch the transcriber's batching off, and go back to the earlier defaults (onnxruntime's
# one thread per core, no batching).
CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "TRANSCRIBER_MAX_BATCH=1": {"TRANSCRIBER_MAX_BATCH": "1"},
    "TRANSCRIBER_THREADS=0,MAX_BATCH=1": {"TRANSCRIBER_THREADS": "0", "TRANSCRIBER_MAX_BATCH": "1"},
}
DEMUCS_CONFIGS: dict[str, dict[str, str]] = {
    "HTDemucs, SEPARATOR_MAX_BATCH=1": {"SEPARATOR_MAX_BATCH": "1"},
    "HTDemucs, SEPARATOR_MAX_BATCH=4": {"SEPARATOR_MAX_BATCH": "4", "SEPARATOR_MAX_STREAMS": "4"},
}
OVERLOAD = {"GATEWAY_MAX_STREAMS": "2", "GATEWAY_MAX_QUEUE": "2"}


# -- the child: one configuration ----------------------------------------------------
async def child(levels: list[int], seconds: float, model_dir: str, overload: int) -> dict[str, object]:
    from launcher.embedded import LocalChain

    path = song(seconds)
    out: dict[str, object] = {"levels": {}}
    with RssPoller([os.getpid()], 0.1) as rss:
        async with LocalChain(video=False, model_dir=model_dir or None) as chain:
            out["rss_warm"] = rss.peak[os.getpid()]
            await process_song(chain.gateway_addr, song(10, seed=1))  # warm every path once
            for k in levels:
                started = time.perf_counter()
                runs = await asyncio.gather(*(process_song(chain.gateway_addr, path) for _ in range(k)))
                wall = time.perf_counter() - started
                rss.sample()
                out["levels"][str(k)] = {  # type: ignore[index]
                    "wall": wall, "errors": [r.error for r in runs if r.error],
                    "throughput": k * seconds / wall, "rss_peak": rss.peak[os.getpid()],
                    "song_walls": [r.total for r in runs],
                }
            if overload:
                started = time.perf_counter()
                runs = await asyncio.gather(*(process_song(chain.gateway_addr, path) for _ in range(overload)))
                out["overload"] = {
                    "wall": time.perf_counter() - started,
                    "refused": [r.total for r in runs if "Overloaded" in r.error],
                    "other_errors": [r.error for r in runs if r.error and "Overloaded" not in r.error],
                    "done": [r.total for r in runs if not r.error],
                    "rss_peak": rss.peak[os.getpid()],
                }
    return out


def run_child(env_changes: dict[str, str], levels: list[int], seconds: float, model_dir: Path | None,
              overload: int = 0) -> dict[str, object]:
    """Run one configuration in a fresh process; returns its report plus its VmHWM."""
    env = dict(os.environ, **env_changes)
    cmd = [sys.executable, __file__, "--child", "--levels", ",".join(map(str, levels)),
           "--seconds", str(seconds), "--overload", str(overload)]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with RssPoller([proc.pid], 0.2) as poll:
        stdout, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"child {env_changes} failed with {proc.returncode}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report["hwm"] = poll.hwm[proc.pid]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--full-demucs", action="store_true")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--configs", default=";".join(CONFIGS), help="which CPU configurations to run (;-separated)")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overload", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]
    if args.child:
        print(json.dumps(run(child(levels, args.seconds, str(args.model_dir or ""), args.overload))))
        return 0

    info = machine()
    song(args.seconds)
    song(10, seed=1)
    reports: dict[str, dict[str, object]] = {}
    for name in args.configs.split(";"):
        print(f"{name} ...", file=sys.stderr)
        reports[name] = run_child(CONFIGS[name], levels, args.seconds, None)
    model_dir = args.model_dir
    if args.full_demucs and model_dir is None:
        from bench_warm_vs_cold import full_demucs_bag

        model_dir = full_demucs_bag()
    if model_dir is not None:
        for name, env in DEMUCS_CONFIGS.items():
            print(f"{name} ...", file=sys.stderr)
            reports[name] = run_child(env, [1, 4], args.seconds, model_dir)
    print("overload ...", file=sys.stderr)
    over = run_child(OVERLOAD, [], args.seconds, None, overload=8)

    rows = []
    for name, rep in reports.items():
        lv = rep["levels"]
        assert isinstance(lv, dict)
        base = lv["1"]["throughput"]
        for k, r in lv.items():
            rows.append([name, k, f"{r['wall']:.1f}", f"{r['throughput']:.1f}", f"{r['throughput'] / base:.2f}x",
                         len(r["errors"]), mib(r["rss_peak"])])
        rows.append([name, "peak (VmHWM)", "", "", "", "", mib(float(rep["hwm"]))])  # type: ignore[arg-type]
    o = over["overload"]
    assert isinstance(o, dict)
    refused = sorted(o["refused"])
    text = "\n".join([
        f"### 4. Concurrency: 1, 2, 4, 8 songs at once ({args.seconds:g} s songs)",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}. Limits as shipped unless named: gateway 4 streams + 16 "
        "queued, separator 2 + 8, transcriber 4 + 16. Throughput = song seconds per wall "
        "second; RSS = the whole embedded chain (one process).",
        "",
        table(["configuration", "songs at once", "wall s", "throughput", "vs 1 at a time", "errors",
               "peak RSS"], rows),
        "",
        f"Past the limit (GATEWAY_MAX_STREAMS=2, GATEWAY_MAX_QUEUE=2, 8 songs at once, client "
        f"retries off): {len(o['done'])} finished, {len(refused)} refused with RESOURCE_EXHAUSTED "
        + (f"after {refused[0] * 1000:.0f}-{refused[-1] * 1000:.0f} ms " if refused else "")
        + f"(other errors: {len(o['other_errors'])}); peak RSS {mib(float(over['hwm']))}.",  # type: ignore[arg-type]
    ])
    print(text)
    if not args.no_doc:
        write_section("concurrency", text, long=model_dir is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
