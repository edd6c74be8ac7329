"""The whole chain against raw Basic Pitch on the mix, per family of songs and split (docs/ACCURACY.md).

    .venv/bin/python bench/family_accuracy.py [--families gbd,band,...] [--per-split 4]
        [--split dev|held-out|both] [--fast] [--check] [--write]

Songs come from bench/families.py (written as MIDI, played by GM soundfonts through
FluidSynth; dev seeds 1..n, held-out seeds 1001..1000+n, fixed before any tuning). For
each mix and part (guitar, bass):

* chain: the notes `tabagent run`'s embedded chain sends (DSP separator as shipped on a
  machine without Demucs weights, Basic Pitch, post-processing, bleed filter);
  `--fast` runs the same classes in-process on cached stems and model outputs
  (bench/chainsim.py), `--check` compares the two on the first mixes;
* raw: Basic Pitch's own whole-file `predict` on the mix, notes limited to the part's
  range (its tuning's lowest open string to its highest fret);

scored with mir_eval onset F1 (50 ms, pitch within 50 cents) against the part's true
notes, with chord-tone recall (recall over the notes struck as part of a chord),
octave errors (true notes found only exactly 12 semitones off, as a share of the true
notes) and notes found / played. The goal: per family and split, chain F1 >= raw + 0.05,
and no mix more than 0.05 below raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import families as fam  # noqa: E402
from mixes import run_chain as chain_run  # noqa: E402
from mixes import write_section  # noqa: E402

from evalkit import synth  # noqa: E402
from tabagent import tuning as tunings  # noqa: E402
from tabagent.notes import Note  # noqa: E402

PARTS = ("guitar", "bass")


@dataclass
class Score:
    """One part of one mix, one system."""

    f1: float
    precision: float
    recall: float
    chord_recall: float      # nan when the part has no chord tones
    octave_errors: float     # share of true notes found only an octave off
    found: int
    played: int


def score(truth: Sequence[Note], chord: Sequence[bool], est: Sequence[Note], tolerance: float = 0.05) -> Score:
    """mir_eval onset matching (50 ms, 50 cents), plus chord-tone recall and octave errors."""
    import mir_eval

    if not truth:
        return Score(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), len(est), 0)
    ref_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in truth])
    ref_p = np.array([synth.midi_to_hz(n.pitch) for n in truth])
    if not est:
        cr = 0.0 if any(chord) else float("nan")
        return Score(0.0, 0.0, 0.0, cr, 0.0, 0, len(truth))
    est_i = np.array([[n.start, max(n.end, n.start + 0.01)] for n in est])
    est_p = np.array([synth.midi_to_hz(n.pitch) for n in est])
    pairs = mir_eval.transcription.match_notes(ref_i, ref_p, est_i, est_p, onset_tolerance=tolerance,
                                               pitch_tolerance=50.0, offset_ratio=None)
    matched_ref = {r for r, _ in pairs}
    matched_est = {e for _, e in pairs}
    p = len(pairs) / len(est)
    r = len(pairs) / len(truth)
    f = 2 * p * r / (p + r) if p + r else 0.0
    chords = [i for i, c in enumerate(chord) if c]
    cr = sum(i in matched_ref for i in chords) / len(chords) if chords else float("nan")
    free = [j for j in range(len(est)) if j not in matched_est]
    octave = 0
    for i, n in enumerate(truth):
        if i in matched_ref:
            continue
        for j in free:
            e = est[j]
            if abs(e.start - n.start) <= tolerance and abs(e.pitch - n.pitch) == 12:
                octave += 1
                break
    return Score(f, p, r, cr, octave / len(truth), len(est), len(truth))


def in_range(notes: Sequence[Note], tuning: tunings.Tuning) -> list[Note]:
    return [n for n in notes if tuning.lowest <= n.pitch <= tuning.highest]


def raw_notes(mix: fam.FamilyMix) -> list[Note]:
    """Basic Pitch's whole-file predict on the mix (cached beside the renders)."""
    from chain_accuracy import raw_basic_pitch

    path = fam.CACHE / f"v{fam.VERSION}" / mix.name / "raw.json"
    if path.exists():
        return [Note.from_dict(d) for d in json.loads(path.read_text())]
    notes = raw_basic_pitch(mix.audio)
    path.write_text(json.dumps([n.to_dict() for n in notes]))
    return notes


def part_tuning(mix: fam.FamilyMix, part: str) -> tunings.Tuning:
    return tunings.named(part, mix.song.guitar_tuning if part == "guitar" else "standard")


async def run_chain(mixes: Sequence[fam.FamilyMix]) -> dict[str, dict[str, list[Note]]]:
    """Each mix through the embedded chain, with its song's guitar tuning."""
    return await chain_run([(m.name, m.audio, m.song.guitar_tuning) for m in mixes])


def run_fast(mixes: Sequence[fam.FamilyMix]) -> dict[str, dict[str, list[Note]]]:
    import chainsim

    return {m.name: chainsim.simulate(m.name, m.audio, m.song.guitar_tuning) for m in mixes}


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def _f(x: float, width: int = 6, digits: int = 3) -> str:
    return f"{x:{width}.{digits}f}" if x == x else f"{'-':>{width}}"


def report(mixes: Sequence[fam.FamilyMix], chain: dict[str, dict[str, list[Note]]]) -> tuple[list[str], list[str]]:
    """Per-mix lines and per family/split summary lines."""
    head = (f"{'mix':<14} {'split':<8} {'part':<6} {'chain':>6} {'P':>5} {'R':>5} {'raw':>6} {'diff':>6} "
            f"{'chord rec c/r':>13} {'oct% c/r':>11} {'found/played c, r':>18}")
    lines = [head]
    rows = []
    for mix in mixes:
        raw = raw_notes(mix)
        for part in PARTS:
            truth = mix.truth[part]
            if not truth:
                continue
            c = score(truth, mix.chord_tones[part], chain[mix.name][part])
            r = score(truth, mix.chord_tones[part], in_range(raw, part_tuning(mix, part)))
            rows.append((mix.family, mix.split, part, c, r))
            lines.append(
                f"{mix.name:<14} {mix.split:<8} {part:<6} {c.f1:6.3f} {c.precision:5.2f} {c.recall:5.2f} "
                f"{r.f1:6.3f} {c.f1 - r.f1:+6.3f} {_f(c.chord_recall, 6, 2)} {_f(r.chord_recall, 6, 2)} "
                f"{100 * c.octave_errors:5.1f} {100 * r.octave_errors:5.1f} "
                f"{c.found:>5}/{c.played:<4} {r.found:>5}")
    summary = [f"{'family':<9} {'split':<8} {'part':<6} {'mixes':>5} {'chain':>6} {'raw':>6} {'diff':>6} "
               f"{'worst':>6} {'chord rec c/r':>13} {'oct% c/r':>11} {'found/played':>13}"]
    families = list(dict.fromkeys(r[0] for r in rows))
    for family in families:
        for part in PARTS:
            for split in ("dev", "held-out"):
                sel = [x for x in rows if x[0] == family and x[2] == part and x[1] == split]
                if not sel:
                    continue
                cf, rf = _mean([x[3].f1 for x in sel]), _mean([x[4].f1 for x in sel])
                worst = min(x[3].f1 - x[4].f1 for x in sel)
                found = sum(x[3].found for x in sel)
                played = sum(x[3].played for x in sel)
                summary.append(
                    f"{family:<9} {split:<8} {part:<6} {len(sel):>5} {cf:6.3f} {rf:6.3f} {cf - rf:+6.3f} "
                    f"{worst:+6.3f} {_f(_mean([x[3].chord_recall for x in sel]), 6, 2)} "
                    f"{_f(_mean([x[4].chord_recall for x in sel]), 6, 2)} "
                    f"{100 * _mean([x[3].octave_errors for x in sel]):5.1f} "
                    f"{100 * _mean([x[4].octave_errors for x in sel]):5.1f} {found:>6}/{played:<6}")
    return lines, summary


ABOUT = (
    "Songs written as MIDI by bench/families.py and played by General MIDI soundfonts",
    "(FluidR3_GM and MuseScore_General_Lite through FluidSynth; GM programs drawn per song",
    "from each role's pool), 30 s each: `gbd` guitar + bass + drums; `band` full band (drums,",
    "bass half the time in D3-A3, piano, organ, strings, pad, synth lead, 2-5 guitars panned);",
    "`chords` power chords, drop-D chugs (told drop D), open and barre strums over bass and",
    "drums; `bass` high (D3-A3) or low bass lines under sustained piano and organ; `acoustic`",
    "solo steel or nylon guitar. dev = seeds 1..n, held-out = seeds 1001..1000+n, fixed",
    "before any setting was tuned; nothing was tuned on held-out. chain = `tabagent run`'s",
    "embedded chain with the DSP separator (no Demucs weights here); raw = Basic Pitch's",
    "`predict` on the whole mix, limited to the part's range. F1: mir_eval onset F1 (50 ms,",
    "50 cents). diff = chain - raw; worst = the lowest per-mix diff. chord rec = recall over",
    "notes struck as part of a chord (chain / raw); oct% = true notes found only exactly 12",
    "semitones off (chain / raw); found/played = notes the chain sent / true notes.",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(fam.FAMILIES))
    parser.add_argument("--per-split", type=int, default=4, help="songs per family and split")
    parser.add_argument("--split", choices=("dev", "held-out", "both"), default="both")
    parser.add_argument("--fast", action="store_true", help="in-process twin of the chain (bench/chainsim.py)")
    parser.add_argument("--check", type=int, default=0, help="compare --fast with the real chain on N mixes")
    parser.add_argument("--mixes", default="", help="only these mixes (comma-separated names)")
    parser.add_argument("--quiet", action="store_true", help="only the summary")
    parser.add_argument("--write", action="store_true", help="put the tables into docs/ACCURACY.md")
    args = parser.parse_args()
    if not fam.have_fluidsynth():
        print("family_accuracy: needs fluidsynth and a GM soundfont (scripts/install.sh --bench)", file=sys.stderr)
        return 1
    splits = ("dev", "held-out") if args.split == "both" else (args.split,)
    songs = fam.songs(args.families.split(","), args.per_split, splits)
    if args.mixes:
        wanted = set(args.mixes.split(","))
        songs = [s for s in songs if s.name in wanted]
    started = time.monotonic()
    mixes = [fam.render(s) for s in songs]
    print(f"rendered {len(mixes)} mixes in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.check:
        sub = mixes[: args.check]
        real, fast = asyncio.run(run_chain(sub)), run_fast(sub)
        for mix in sub:
            for part in PARTS:
                if mix.truth[part]:
                    a = score(mix.truth[part], mix.chord_tones[part], real[mix.name][part]).f1
                    b = score(mix.truth[part], mix.chord_tones[part], fast[mix.name][part]).f1
                    print(f"{mix.name} {part}: chain {a:.3f} fast {b:.3f} notes {len(real[mix.name][part])} "
                          f"{len(fast[mix.name][part])}")
        return 0
    chain = run_fast(mixes) if args.fast else asyncio.run(run_chain(mixes))
    lines, summary = report(mixes, chain)
    if not args.quiet:
        print("\n".join(lines))
        for mix in mixes:
            print(f"  {mix.name}: {mix.song.soundfont}, {mix.song.bpm:.0f} bpm, {mix.song.description}")
    print("\n".join(summary))
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.write:
        command = ".venv/bin/python bench/family_accuracy.py" + (
            f" --per-split {args.per_split}" if args.per_split != 4 else "")
        write_section("families", "The whole chain on full-band, chord-heavy, bass and acoustic songs", command,
                      ABOUT, [*summary, "", *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
