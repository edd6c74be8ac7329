"""`make bench`: the quick version of every performance benchmark, one after another.

    .venv/bin/python bench/run_all.py            # quick runs, each updates docs/PERFORMANCE.md
    .venv/bin/python bench/run_all.py --long     # the long runs too (see below)
    .venv/bin/python bench/run_all.py --only memory,first-event

Quick (about 15 minutes on a 2-core CPU): warm vs. per-request baseline on a 30 s clip with
the shipped default separator; chain overhead on 30 s; first tab event for 30 s and 5 min;
1/2/4/8 concurrent 30 s songs and the refusal latency past the limit; peak RSS for 1 and
10 minute songs; full-size HTDemucs (6 sources) on the CPU with today's vs the new
settings; the video renderer's reference vs fast paint path (same frames checked). Long
(an hour or more on a 2-core CPU): the same with a full-size random-weight HTDemucs where
it applies, every bag shape and each Demucs change alone, the 60 minute memory run,
embedded and as separate processes, and the video over 30 s with other x264 presets.

Each script waits (up to --wait seconds) for the machine's 1-minute load average to drop
below 0.7 before it starts, so other people's jobs skew the numbers less; the load at the
start is written next to every result.

Cold start (`cold-start`, about 3 minutes quick, 3 runs each; 5 runs long): every service's
and `tabagent up`'s process start to ready, `tabagent run` to its first tab event, and the
first request against the second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import wait_for_quiet  # noqa: E402

QUICK: dict[str, list[str]] = {
    "warm-vs-cold": ["bench_warm_vs_cold.py"],
    "chain-overhead": ["bench_chain_overhead.py"],
    "first-event": ["bench_first_event.py"],
    "cold-start": ["bench_cold_start.py"],
    "concurrency": ["bench_concurrency.py", "--configs", "defaults;TRANSCRIBER_MAX_BATCH=1"],
    "memory": ["bench_memory.py", "--minutes", "1", "10"],
    "demucs-cpu": ["bench_demucs_cpu.py"],
    "video": ["bench_video.py", "--compare", "--write", "--seconds", "15"],
    "retry-after": ["bench_retry_after.py", "--seconds", "16"],
}
LONG: dict[str, list[str]] = {
    "warm-vs-cold": ["bench_warm_vs_cold.py", "--full-demucs"],
    "chain-overhead": ["bench_chain_overhead.py"],
    "first-event": ["bench_first_event.py", "--video"],
    "cold-start": ["bench_cold_start.py", "--runs", "5"],
    "concurrency": ["bench_concurrency.py", "--full-demucs"],
    "memory": ["bench_memory.py", "--minutes", "1", "10", "60", "--split", "60"],
    "memory-video": ["bench_memory.py", "--minutes", "1", "10", "--video"],
    "demucs-cpu": ["bench_demucs_cpu.py", "--long"],
    "video": ["bench_video.py", "--long", "--write"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="the long runs (full-size Demucs, 60 min)")
    parser.add_argument("--only", default="", help="comma-separated benchmark keys")
    parser.add_argument("--wait", type=float, default=300.0, help="longest wait for a quiet machine, s")
    args = parser.parse_args()
    plan = LONG if args.long else QUICK
    keys = [k for k in args.only.split(",") if k] or list(plan)
    failed = []
    for key in keys:
        load = wait_for_quiet(0.7, args.wait)
        print(f"== {key} (load average {load[0]:.2f}) ==", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / plan[key][0]), *plan[key][1:]])
        print(f"== {key}: exit {code} after {time.perf_counter() - started:.0f} s ==", flush=True)
        if code:
            failed.append(key)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
