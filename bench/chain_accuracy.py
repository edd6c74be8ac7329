"""Onset F1 of the whole chain (`tabagent run`'s embedded chain) vs raw Basic Pitch on the mix.

    .venv/bin/python bench/chain_accuracy.py [--synthetic 3] [--no-slakh] [--no-soundfont] [--write]

For each guitar + bass + drums mix it prints the chain's guitar and bass onset F1
(mir_eval, 50 ms) next to raw Basic Pitch run on the whole mix scored against the same
truth, and the number of notes sharing a string while sounding (must be 0). Mixes come
in families (bench/mixes.py): synth (evalkit.synth voices), slakh (the shared track's
real stems), gm-synth and gm-slakh (the same notes played by a GM soundfont through
FluidSynth, when installed: `scripts/install.sh --bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixes import (  # noqa: E402
    add_arguments,
    command_line,
    mean_lines,
    onset_f1,
    run_chain,
    selected,
    write_section,
)

from evalkit import synth  # noqa: E402
from evalkit.scoring import count_collisions  # noqa: E402
from tabagent import tuning as tunings  # noqa: E402
from tabagent.notes import Note  # noqa: E402

ABOUT = (
    "`tabagent run`'s embedded chain (DSP separator as shipped, Basic Pitch, bass",
    "post-processing, the gateway's bleed filter) against raw Basic Pitch on the whole mix",
    "(its notes limited to the part's range: standard tuning's lowest open string to its",
    "highest fret), both scored with mir_eval onset F1 (50 ms, pitch within 50 cents) against each part's",
    "true notes. Synthesised mixes (synth) come from `evalkit.examples`; the Slakh mixes",
    "(slakh) are the shared track's guitar (S08) and bass (S04) stems with drums rendered",
    "from its drum MIDI, in 30 s excerpts (skipped when ../shared/data is absent); gm-synth",
    "and gm-slakh play the same notes with General MIDI guitars, basses and drums",
    "(FluidSynth, FluidR3_GM): sampled timbres nothing here was tuned on. Collisions: notes",
    "sounding on one string at once (must be 0).",
)


def raw_basic_pitch(audio: np.ndarray) -> list[Note]:
    """Basic Pitch's own whole-file `predict` (ONNX model, default settings) on 44.1 kHz audio."""
    from transcriber_svc.basicpitch import import_quietly, onnx_model_path

    inference = import_quietly("basic_pitch.inference")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio.wav"
        synth.write_wav(str(path), audio)
        _, _, events = inference.predict(str(path), str(onnx_model_path()))
    return [Note(int(e[2]), float(e[0]), float(e[1]), float(e[3])) for e in events]


def main() -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    mixes = selected(args)
    results = asyncio.run(run_chain([(m.name, m.audio, None) for m in mixes]))
    rows: list[tuple[str, str, float, float]] = []
    lines = [f"{'mix':<28} {'part':<7} {'chain F1':>8} {'P':>5} {'R':>5} {'raw mix F1':>10} {'collisions':>10}"]
    for mix in mixes:
        raw = raw_basic_pitch(mix.audio)
        for part in ("guitar", "bass"):
            p, r, f = onset_f1(mix.truth[part], results[mix.name][part])
            tuning = tunings.standard(part)
            _, _, fr = onset_f1(mix.truth[part], [n for n in raw if tuning.lowest <= n.pitch <= tuning.highest])
            c = count_collisions(results[mix.name][part])
            rows.append((mix.group, part, f, fr))
            lines.append(f"{mix.name:<28} {part:<7} {f:8.3f} {p:5.2f} {r:5.2f} {fr:10.3f} {c:10d}")
    lines += mean_lines(rows, 28, ("{:8.3f} {:>5} {:>5}", "{:10.3f}"))
    print("\n".join(lines))
    if args.write:
        write_section("chain", "The whole chain on guitar + bass + drums mixes",
                      command_line("chain_accuracy.py", args), ABOUT, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
