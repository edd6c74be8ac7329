"""Benchmark 3: time to the first tab event vs. total time, for a 30 s and a 5 min song.

    .venv/bin/python bench/bench_first_event.py                      # 30 s and 300 s, no video
    .venv/bin/python bench/bench_first_event.py --video              # also 30 s with video
    .venv/bin/python bench/bench_first_event.py --seconds 30 300 --model-dir DIR

The songs come from `evalkit.examples.make_song` (guitar arpeggios and strums, a bass
line, drums). The warm embedded chain (`LocalChain`) gets each song once after a warm-up
request; the client records when each kind of event first arrives: the separator's first
progress (its first stem audio has left), the transcriber's first progress, the first
note batch with fingered notes (the first tab event), the first video fragment, and the
end (the last artifact).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command, machine, machine_line, process_song, run, song, table, write_section  # noqa: E402

GOAL = 0.15  # first tab event of the 5 min song within 15 % of the total


async def measure(seconds: list[float], video: bool, model_dir: Path | None) -> list[tuple[str, object]]:
    from launcher.embedded import LocalChain

    results = []
    async with LocalChain(video=video, model_dir=str(model_dir) if model_dir else None) as chain:
        await process_song(chain.gateway_addr, song(10, seed=1), video=video)  # warm-up
        for s in seconds:
            r = await process_song(chain.gateway_addr, song(s))
            if r.error:
                raise SystemExit(f"{s} s song failed: {r.error}")
            results.append((f"{s:g} s", r))
        if video:
            r = await process_song(chain.gateway_addr, song(seconds[0]), video=True)
            results.append((f"{seconds[0]:g} s + video", r))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 300.0])
    parser.add_argument("--video", action="store_true", help="also the first song with video")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    info = machine()
    for s in args.seconds:
        song(s)  # synthesise before timing anything
    results = run(measure(args.seconds, args.video, args.model_dir))
    rows, verdicts = [], []
    for name, r in results:
        first = r.first
        share = r.first_tab / r.total
        rows.append([name, f"{first.get('progress:separate', float('nan')):.2f}",
                     f"{first.get('progress:transcribe', float('nan')):.2f}", f"{r.first_tab:.2f}",
                     f"{first['videofragment']:.2f}" if "videofragment" in first else "-",
                     f"{r.total:.2f}", f"**{share:.1%}**", f"{r.seconds / r.total:.1f}x"])
        if r.seconds >= 299:
            verdicts.append(f"{name}: first tab event at {share:.1%} of the total "
                            f"({'meets' if share <= GOAL else 'does not meet'} the {GOAL:.0%} goal)")
    separator = "full-size random HTDemucs" if args.model_dir else "shipped default (DSP separator)"
    text = "\n".join([
        "### 3. Time to the first tab event vs. total time",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine_line(info)}; separator: {separator}; warm embedded chain, times "
        "from the client's call, in seconds.",
        "",
        table(["song", "first stems", "first transcribe progress", "first tab event", "first video fragment",
               "total", "first tab / total", "speed (song s / wall s)"], rows),
        "",
        *(f"- {v}." for v in verdicts),
    ])
    print(text)
    if not args.no_doc:
        long = args.video or args.model_dir is not None or args.seconds != [30.0, 300.0]
        write_section("first-event", text, long=long)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
