"""How many guitar notes land in the right part with `--parts lead,rhythm,bass`, on panned mixes.

    .venv/bin/python bench/part_split.py [--no-soundfont] [--seconds 20] [--write]

Each song of `evalkit.lead_rhythm` (a centred lead line, a double-tracked rhythm guitar
panned hard left and right, bass and drums; also summed to mono, and with the parts
off-centre) goes through `tabagent run`'s embedded chain (DSP separator, Basic Pitch,
the stereo split and the lead/rhythm note filter) with parts lead, rhythm and bass.
Every lead or rhythm note the chain wrote is matched (onset within 50 ms, same pitch)
to the true lead and rhythm notes: "right part" is the share of matched notes written in
the part they belong to; "found" is the share of each true part the chain wrote in the
right part. The split's settings were chosen on the dev songs only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalkit import lead_rhythm, synth  # noqa: E402
from evalkit.scoring import ONSET_TOLERANCE  # noqa: E402
from tabagent.notes import Note  # noqa: E402

PARTS = ("lead", "rhythm")
ABOUT = (
    "`tabagent run --parts lead,rhythm,bass` (embedded chain, DSP separator as shipped) on",
    "songs of `evalkit.lead_rhythm`: a single-note lead (E4-E6) over strummed chords (E2-E4),",
    "bass and drums. `stereo`: lead centred, the rhythm guitar double-tracked hard left and",
    "hard right (two takes: own timing, loudness and phases); `offset`: lead 40 % left, takes",
    "at 70 %; `mono`: the stereo mix summed to mono (no stereo cue: chords and register only).",
    "Voices: `synth` (evalkit's additive voices) and `gm` (General MIDI guitars, FluidSynth).",
    "Each lead or rhythm note written is matched (onset 50 ms, same pitch) to the true lead",
    "and rhythm notes. right part: matched notes written in their own part / all matched;",
    "lead found, rhythm found: true notes written in their own part / true notes. The split's",
    "settings (gateway/stereo_split.py, gateway/partsplit.py) were chosen on dev only.",
)


def _match(truth: dict[str, list[Note]], written: dict[str, list[Note]]) -> dict[str, int]:
    """Counts: for each written part, its notes matched to true lead / true rhythm notes."""
    pool = [(name, n) for name in PARTS for n in truth[name]]
    used: set[int] = set()
    counts: dict[str, int] = defaultdict(int)
    for part in PARTS:
        for note in sorted(written[part], key=lambda n: n.start):
            best = None
            for k, (_name, ref) in enumerate(pool):
                if k in used or ref.pitch != note.pitch or abs(ref.start - note.start) > ONSET_TOLERANCE:
                    continue
                if best is None or abs(ref.start - note.start) < abs(pool[best][1].start - note.start):
                    best = k
            if best is None:
                counts[f"{part}->none"] += 1
                continue
            used.add(best)
            counts[f"{part}->{pool[best][0]}"] += 1
    for name in PARTS:
        counts[f"true {name}"] = len(truth[name])
    return counts


async def run(songs: list[lead_rhythm.LeadRhythmSong]) -> dict[str, dict[str, int]]:
    from launcher.embedded import LocalChain
    from tabagent.client import AsyncClient, Notes, process_config

    out: dict[str, dict[str, int]] = {}
    config = process_config(parts=["lead", "rhythm", "bass"])
    async with LocalChain(video=False) as chain, AsyncClient(chain.gateway_addr) as client:
        for song in songs:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{song.name}.wav"
                synth.write_wav(str(path), song.mix)
                written: dict[str, list[Note]] = {"lead": [], "rhythm": [], "bass": []}
                async for event in client.process(path, config, Path(tmp) / "out"):
                    if isinstance(event, Notes):
                        written[event.part].extend(event.notes)
            out[song.name] = _match(song.truth, written)
            c = out[song.name]
            print(f"  {song.name} ({song.split}): lead {c['lead->lead']}/{c['lead->rhythm']}/{c['lead->none']}"
                  f"  rhythm {c['rhythm->rhythm']}/{c['rhythm->lead']}/{c['rhythm->none']}", file=sys.stderr)
    return out


def table(songs: list[lead_rhythm.LeadRhythmSong], counts: dict[str, dict[str, int]]) -> list[str]:
    lines = [f"{'split':<9} {'voice':<6} {'layout':<7} {'right part':>10} {'lead found':>10} {'rhythm found':>12}"
             f" {'written lead: lead/rhythm/none':>31} {'written rhythm: rhythm/lead/none':>33}"]
    groups: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for song in songs:
        for key in ((song.split, song.voice, song.layout), (song.split, "all", song.layout), (song.split, "all", "all")):
            for name, value in counts[song.name].items():
                groups[key][name] += value
    order = sorted(groups, key=lambda k: (("dev", "held-out").index(k[0]), k[1] == "all", k[1], k[2] == "all", k[2]))
    for key in order:
        c = groups[key]
        right = c["lead->lead"] + c["rhythm->rhythm"]
        matched = right + c["lead->rhythm"] + c["rhythm->lead"]
        lines.append(
            f"{key[0]:<9} {key[1]:<6} {key[2]:<7} {right / max(matched, 1):>10.3f}"
            f" {c['lead->lead'] / max(c['true lead'], 1):>10.3f} {c['rhythm->rhythm'] / max(c['true rhythm'], 1):>12.3f}"
            f" {c['lead->lead']:>13}/{c['lead->rhythm']}/{c['lead->none']:<10}"
            f" {c['rhythm->rhythm']:>15}/{c['rhythm->lead']}/{c['rhythm->none']}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-soundfont", action="store_true", help="only the synth voices")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--split", choices=("dev", "held-out", "both"), default="both")
    parser.add_argument("--write", action="store_true", help="put the table into docs/ACCURACY.md")
    args = parser.parse_args()
    voices = ("synth",) if args.no_soundfont else ("synth", "gm")
    if not args.no_soundfont and not lead_rhythm.have_fluidsynth():
        print("no fluidsynth + FluidR3_GM: gm songs skipped (scripts/install.sh --bench)", file=sys.stderr)
    splits = ("dev", "held-out") if args.split == "both" else (args.split,)
    songs = [s for split in splits for s in lead_rhythm.songs(split, voices, seconds=args.seconds)]
    lines = table(songs, asyncio.run(run(songs)))
    print("\n".join(lines))
    if args.write:
        from mixes import write_section

        command = (".venv/bin/python bench/part_split.py" + (" --no-soundfont" if args.no_soundfont else "")
                   + (f" --seconds {args.seconds:g}" if args.seconds != 20.0 else ""))
        write_section("part-split", "Lead and rhythm: notes in the right part", command, ABOUT, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
