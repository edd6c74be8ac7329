"""Precision and recall of each playing technique the transcriber marks, on renders with known techniques.

    .venv/bin/python bench/technique_accuracy.py [--no-soundfont] [--write]

Phrases of `evalkit.technique_renders` (bends of 1/4 to 1 1/2 steps, vibrato, hammer-ons,
pull-offs, slides, let-ring arpeggios, and picked legato pairs that look alike) are
rendered by the additive synth and, with FluidSynth installed (`scripts/install.sh
--bench`), by General MIDI guitars driven by the pitch wheel. Each render goes through
the transcriber's own NoteTracker (Basic Pitch, post-processing, technique detection,
fingering, `techniques.verify`), as the service runs it. A mark counts when its note
matches a reference note (onset within 50 ms, same pitch) that has the same mark.
The detector's thresholds were chosen on the dev phrases only; held-out phrases use
other seeds, another synth voice and other GM guitar programs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalkit import technique_renders  # noqa: E402
from evalkit.scoring import onset_matches, onset_scores, technique_scores  # noqa: E402
from evalkit.transcriber_eval import transcribe  # noqa: E402
from tabagent.techniques import bend_amount  # noqa: E402
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE  # noqa: E402
from transcriber_svc.model import BasicPitchModel  # noqa: E402

TECHNIQUES = ("bend", "vibrato", "hammer_on", "pull_off", "slide", "let_ring")
SPLITS = ("dev", "held-out")
ABOUT = (
    "Each technique the transcriber marks, scored on guitar phrases with known techniques",
    "(`evalkit.technique_renders`): bends of 1/4, 1/2, full and 1 1/2 steps, vibrato,",
    "hammer-ons, pull-offs, slides and let-ring arpeggios between picked notes, including",
    "picked legato pairs a few semitones apart (what a hammer-on must not be taken for).",
    "`synth`: evalkit's additive plucked voice with the pitch curve in its phase (a hammer-on",
    "taps in a little energy); `gm`: General MIDI guitars (FluidSynth, FluidR3_GM) with the",
    "pitch wheel (range 12 semitones) for every bend, slide, hammer-on, pull-off and vibrato:",
    "legato with no new attack at all. Each render runs through the transcriber's NoteTracker",
    "as the service runs it. A mark is right when its note matches (onset within 50 ms, same",
    "pitch) a reference note with that mark: P = right / marked, R = right / expected (a",
    "missed note counts against R). `bend size`: matched bends whose size, quantised to",
    "1/4, 1/2, full or 1 1/2 steps, is the played one. Thresholds (tabagent/techniques.py",
    "`Settings`, and the fingering's legato weight) were chosen on dev only; held-out has",
    "other seeds, another synth voice and other GM programs (dev 27, 29; held-out 26, 30, 25).",
)


def evaluate(model: BasicPitchModel, families: tuple[str, ...]) -> dict[tuple[str, str], dict[str, list[int]]]:
    """(split, family) -> technique -> [right, marked, expected], plus onset F1 and bend sizes."""
    totals: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for split in SPLITS:
        for render in technique_renders.renders(split, families):
            audio = soxr.resample(render.audio, technique_renders.SAMPLE_RATE, AUDIO_SAMPLE_RATE, "HQ")
            _, final = transcribe(model, audio.astype(np.float32), "guitar")
            notes = [n for n in final if n.string >= 0]
            row = totals[(split, render.family)]
            for name, score in technique_scores(render.reference, notes, TECHNIQUES).items():
                row[name][0] += score.true_positive
                row[name][1] += score.marked
                row[name][2] += score.expected
            onset = onset_scores(render.reference, notes)
            row["onset"][0] += int(round(1000 * onset.f1))
            row["onset"][1] += 1000
            for r, e in onset_matches(render.reference, notes):
                ref, est = render.reference[r], notes[e]
                if "bend" in ref.techniques and "bend" in est.techniques:
                    row["bend size"][1] += 1
                    row["bend size"][0] += int(bend_amount(est) == bend_amount(ref))
            print(f"  {render.name} ({split}): onset F1 {onset.f1:.3f}", file=sys.stderr)
    return totals


def table(totals: dict[tuple[str, str], dict[str, list[int]]]) -> list[str]:
    head = f"{'split':<9} {'family':<6} {'onset F1':>8}  " + "  ".join(f"{t:>15}" for t in TECHNIQUES) + f"  {'bend size':>9}"
    lines = [head, f"{'':<9} {'':<6} {'':>8}  " + "  ".join(f"{'P     R   (n)':>15}" for _ in TECHNIQUES)]
    keys = sorted(totals, key=lambda k: (SPLITS.index(k[0]), k[1]))
    for split in SPLITS:
        combined: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for key in [k for k in keys if k[0] == split]:
            for name, values in totals[key].items():
                combined[name] = [a + b for a, b in zip(combined[name], values, strict=True)]
        for family, row in [*((k[1], totals[k]) for k in keys if k[0] == split), ("all", combined)]:
            cells = []
            for t in TECHNIQUES:
                right, marked, expected = row[t]
                cells.append(f"{right / max(marked, 1):.2f} {right / max(expected, 1):.2f} ({expected:>3})")
            onset = row["onset"][0] / max(row["onset"][1], 1)
            size = row["bend size"]
            lines.append(f"{split:<9} {family:<6} {onset:>8.3f}  " + "  ".join(f"{c:>15}" for c in cells)
                         + f"  {size[0] / max(size[1], 1):>9.2f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-soundfont", action="store_true", help="only the synth renders")
    parser.add_argument("--write", action="store_true", help="put the table into docs/ACCURACY.md")
    args = parser.parse_args()
    families = ("synth",) if args.no_soundfont else ("synth", "gm")
    if not args.no_soundfont and not technique_renders.have_fluidsynth():
        print("no fluidsynth + FluidR3_GM: gm renders skipped (scripts/install.sh --bench)", file=sys.stderr)
    lines = table(evaluate(BasicPitchModel(), families))
    print("\n".join(lines))
    if args.write:
        from mixes import write_section

        command = ".venv/bin/python bench/technique_accuracy.py" + (" --no-soundfont" if args.no_soundfont else "")
        write_section("techniques", "Playing techniques (bends, vibrato, hammer-ons, pull-offs, slides, let ring)",
                      command, ABOUT, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
