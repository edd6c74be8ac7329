"""What the practice features are worth on synthesised songs: chord names and backing tracks.

    .venv/bin/python bench/practice.py [--write]

Each song (evalkit.examples: a known chord progression, one chord a bar, guitar + bass +
drums) goes through `tabagent run`'s embedded chain as shipped (DSP separator, Basic
Pitch, tracked beats). Chord names: result.json's `chords` (from the transcribed notes,
bar by bar) against the true progression, scored with mir_eval.chord over the song's
time (`root`: the root is right; `majmin`: root and major/minor quality), weighted by
duration. Backing tracks: how loud each part still is in its `no-<part>.flac`, relative
to the original mix (the least-squares gain of the part's true stem in each file), in dB.
Dev songs are the ones looked at while writing tabagent/chords.py and gateway/backing.py;
held-out songs (other seeds and tempi) were not looked at, and nothing was tuned on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command, machine_line, table  # noqa: E402

from evalkit import synth  # noqa: E402
from evalkit.examples import Song, make_song  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ACCURACY.md"
DEV = [(0, 100.0), (1, 100.0), (2, 100.0)]
HELD_OUT = [(100, 92.0), (101, 97.5), (102, 108.0), (103, 120.0)]
SECONDS = 24.0
PROGRESSION = ["Em", "C", "G", "D", "Am", "C", "G", "D"]
QUALITY = {"": "maj", "m": "min", "5": "5", "7": "7", "m7": "min7", "maj7": "maj7", "sus4": "sus4",
           "sus2": "sus2", "6": "maj6", "m6": "min6", "add9": "maj(9)", "dim": "dim", "aug": "aug",
           "m7b5": "hdim7", "dim7": "dim7"}


def mir_label(name: str) -> str:
    """A tabagent.chords name in mir_eval's syntax ("Em" -> "E:min"; the bass is left out)."""
    main = name.split("/")[0]
    root, suffix = (main[:2], main[2:]) if len(main) > 1 and main[1] in "#b" else (main[:1], main[1:])
    return f"{root}:{QUALITY[suffix]}"


def truth_chords(song: Song) -> tuple[np.ndarray, list[str]]:
    """The progression's intervals, as evalkit.examples.make_song plays it (first bar at 0.5 s)."""
    bar = 4 * 60.0 / song.bpm
    starts = []
    t0 = 0.5
    while t0 + bar <= song.seconds - 0.3:
        starts.append(t0)
        t0 += bar
    intervals = [[0.0, 0.5]] + [[s, s + bar] for s in starts] + [[starts[-1] + bar, song.seconds]]
    labels = ["N"] + [mir_label(PROGRESSION[i % len(PROGRESSION)]) for i in range(len(starts))] + ["N"]
    return np.array(intervals), labels


def estimated_chords(doc: dict, seconds: float) -> tuple[np.ndarray, list[str]]:
    intervals, labels, t = [], [], 0.0
    for c in doc["chords"]:
        if c["start"] > t:
            intervals.append([t, c["start"]])
            labels.append("N")
        intervals.append([c["start"], c["end"]])
        labels.append(mir_label(c["name"]))
        t = c["end"]
    if t < seconds:
        intervals.append([t, seconds])
        labels.append("N")
    return np.array(intervals), labels


def read_flac(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray().reshape(-1, 2) for f in c.decode(audio=0)]
    return np.concatenate(frames).astype(np.float32).mean(axis=1) / 32768.0


def left_in(stem: np.ndarray, audio: np.ndarray) -> float:
    """The least-squares gain of `stem` in `audio` (mono, same start)."""
    n = min(stem.shape[0], audio.shape[0])
    s = stem[:n]
    return float(np.dot(audio[:n], s) / max(np.dot(s, s), 1e-12))


def score(song: Song, out: Path) -> dict[str, float]:
    import mir_eval

    doc = json.loads((out / "result.json").read_text())
    ref_i, ref_l = truth_chords(song)
    est_i, est_l = estimated_chords(doc, song.seconds)
    est_i, est_l = mir_eval.util.adjust_intervals(est_i, est_l, ref_i.min(), ref_i.max(),
                                                  mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD)
    merged, ref, est = mir_eval.util.merge_labeled_intervals(ref_i, ref_l, est_i, est_l)
    durations = mir_eval.util.intervals_to_durations(merged)
    row = {"root": float(mir_eval.chord.weighted_accuracy(mir_eval.chord.root(ref, est), durations)),
           "majmin": float(mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref, est), durations))}
    original = read_flac(out / "original.flac")
    for part in ("guitar", "bass"):
        stem = song.stems[part]
        stem = stem.mean(axis=1) if stem.ndim == 2 else stem
        ratio = left_in(stem, read_flac(out / f"no-{part}.flac")) / left_in(stem, original)
        row[f"{part}_db"] = 20 * np.log10(max(abs(ratio), 1e-6))
    return row


async def run_all(songs: dict[str, Song]) -> dict[str, dict[str, float]]:
    from launcher.embedded import LocalChain
    from tabagent.client import AsyncClient, process_config

    rows = {}
    async with LocalChain(video=False) as chain, AsyncClient(chain.gateway_addr) as client:
        for name, song in songs.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}.wav"
                synth.write_wav(str(path), song.mix)
                async for _ in client.process(path, process_config(filename=path.name, title=name), Path(tmp) / "out"):
                    pass
                rows[name] = score(song, Path(tmp) / "out")
            print(f"  {name}: {rows[name]}", file=sys.stderr)
    return rows


def report(rows: dict[str, dict[str, float]], split: dict[str, str]) -> str:
    lines = ["## Practice: chord names and backing tracks", "",
             f"Command: `{command()}`  ", f"Machine: {machine_line()}.", "",
             __doc__.split("\n\n", 2)[2].strip().replace("\n", " "), ""]
    body = [[name, split[name], f"{r['root']:.2f}", f"{r['majmin']:.2f}", f"{r['guitar_db']:.1f} dB",
             f"{r['bass_db']:.1f} dB"] for name, r in rows.items()]
    for which in ("dev", "held-out"):
        chosen = [r for n, r in rows.items() if split[n] == which]
        body.append([f"**mean {which}**", which] + [f"**{np.mean([r[k] for r in chosen]):.2f}**" for k in ("root", "majmin")]
                    + [f"**{np.mean([r[k] for r in chosen]):.1f} dB**" for k in ("guitar_db", "bass_db")])
    lines.append(table(["song", "split", "chord root", "chord maj/min", "guitar left in no-guitar",
                        "bass left in no-bass"], body))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the section in docs/ACCURACY.md")
    args = parser.parse_args()
    songs: dict[str, Song] = {}
    split: dict[str, str] = {}
    for which, chosen in (("dev", DEV), ("held-out", HELD_OUT)):
        for seed, bpm in chosen:
            name = f"seed{seed}-{bpm:g}bpm"
            songs[name] = make_song(SECONDS, bpm=bpm, seed=seed)
            split[name] = which
    rows = asyncio.run(run_all(songs))
    text = report(rows, split)
    print(text)
    if args.write:
        from common import replace_marked

        replace_marked(DOC, "<!-- practice:start -->", "<!-- practice:end -->",
                       f"<!-- practice:start -->\n{text}\n<!-- practice:end -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
