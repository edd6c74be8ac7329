"""Onset F1 on isolated guitar and bass stems: raw Basic Pitch vs what the transcriber sends.

    .venv/bin/python bench/stem_accuracy.py [--synthetic 3] [--no-slakh] [--no-soundfont] [--write]

For each part of each mix in bench/mixes.py, the part alone (no separation) is scored
with mir_eval onset F1 (50 ms, pitch within 50 cents) two ways: Basic Pitch's own
whole-file `predict` with its defaults (the raw baseline), and the notes the transcriber
service sends for that instrument (streamed windows, post-processing: bass monophony and
octave repair, guitar cleanup; in range or not), from evalkit.transcriber_eval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ABOUT = (
    "Each part of the chain benchmark's mixes (above) on its own, without separation:",
    "Basic Pitch's whole-file `predict` with its defaults (raw) against the notes the",
    "transcriber service sends for that instrument (sent: streamed, then the bass's",
    "monophony and octave repair, or the guitar's cleanup). Onset F1, 50 ms.",
)

from chain_accuracy import raw_basic_pitch  # noqa: E402
from mixes import SR, add_arguments, command_line, mean_lines, onset_f1, selected, write_section  # noqa: E402


def main() -> int:
    import soxr

    from evalkit.transcriber_eval import transcribe
    from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
    from transcriber_svc.model import BasicPitchModel

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    mixes = selected(args)
    model = BasicPitchModel()
    lines = [f"{'stem':<28} {'part':<7} {'raw F1':>7} {'P':>5} {'R':>5} {'sent F1':>8} {'P':>5} {'R':>5}"]
    rows: list[tuple[str, str, float, float]] = []
    for mix in mixes:
        for part in ("guitar", "bass"):
            mono = mix.stems[part]
            raw = raw_basic_pitch(np.stack([mono, mono], axis=1))
            audio = soxr.resample(mono.astype(np.float32), SR, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)
            _, sent = transcribe(model, audio, part)
            rp, rr, rf = onset_f1(mix.truth[part], raw)
            sp, sr_, sf = onset_f1(mix.truth[part], sent)
            rows.append((mix.group, part, rf, sf))
            lines.append(f"{mix.name:<28} {part:<7} {rf:7.3f} {rp:5.2f} {rr:5.2f} {sf:8.3f} {sp:5.2f} {sr_:5.2f}")
    lines += mean_lines(rows, 28, ("{:7.3f} {:>5} {:>5}", "{:8.3f}"))
    print("\n".join(lines))
    if args.write:
        write_section("stems", "Isolated stems: raw Basic Pitch vs what the transcriber sends",
                      command_line("stem_accuracy.py", args), ABOUT, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
