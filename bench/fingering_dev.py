"""A weight change judged on the dev songs over slightly perturbed weights, not one run.

    .venv/bin/python bench/fingering_dev.py                                  # shipped weights
    .venv/bin/python bench/fingering_dev.py --set lead_low=0 --set lead_open_up=1   # a change
    .venv/bin/python bench/fingering_dev.py --set shift=1.0 --seeds 8 --instrument guitar

The fingering's choices between two hand positions are near-ties (bench/fingering_errors.py
--costs), so one weight moved a little flips whole sections and moves the dev score by
about half a point either way. This scores the dev tracks of bench/human_tabs.py (cache
only; the held-out songs are never read) with the weights as given (seed 0) and with
every non-zero weight multiplied by 1 + 0.1 N(0, 1) (seeds 1..), and prints the
agreement per seed, its mean and its range: a change is worth keeping when the mean
rises, not only seed 0. The same seeds give the same perturbations in every run, so two
commands compare change against shipped weight for weight.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fingering_errors import dev_tracks  # noqa: E402

from evalkit.tabcorpus import HumanTrack  # noqa: E402
from tabagent.fingering import assign  # noqa: E402
from tabagent.fretboard import Weights, weights_for  # noqa: E402
from tabagent.notes import Note  # noqa: E402

SCALE = 0.1  # relative spread of the perturbation


def perturbed(weights: Weights, seed: int) -> Weights:
    """The weights with every non-zero float field scaled by 1 + SCALE N(0, 1) (seed 0: as given)."""
    if seed == 0:
        return weights
    rng = np.random.default_rng(seed)
    fields = [f.name for f in dataclasses.fields(Weights) if f.type in ("float", float)]
    return dataclasses.replace(
        weights, **{n: getattr(weights, n) * (1 + SCALE * rng.standard_normal()) for n in fields if getattr(weights, n)}
    )


def agreement(tracks: list[HumanTrack], changes: dict[str, float], instrument: str | None, seed: int) -> float:
    """Share of the tracks' notes on the human's string and fret."""
    matched = total = 0
    for track in tracks:
        weights = weights_for(track.tuning)
        if instrument in (None, track.instrument):
            weights = dataclasses.replace(weights, **changes)
        notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
        assign(notes, track.tuning, perturbed(weights, seed))
        matched += sum((h.string, h.fret) == (e.string, e.fret) for h, e in zip(track.notes, notes, strict=True))
        total += len(notes)
    return matched / total


def _change(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in {f.name for f in dataclasses.fields(Weights)} or not value:
        raise argparse.ArgumentTypeError(f"expected WEIGHT=VALUE with a field of Weights, got {text!r}")
    return name, float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=_change, action="append", default=[], metavar="WEIGHT=VALUE",
                        help="change one weight (repeatable)")
    parser.add_argument("--instrument", choices=("guitar", "bass"), help="change only this instrument's weights")
    parser.add_argument("--seeds", type=int, default=6, help="weight sets: as given, then perturbed")
    args = parser.parse_args(argv)
    changes = dict(args.set)
    tracks = dev_tracks()
    scores = np.array([agreement(tracks, changes, args.instrument, seed) for seed in range(args.seeds)])
    label = ", ".join(f"{k}={v:g}" for k, v in changes.items()) or "shipped weights"
    print(f"{label}: dev {100 * scores[0]:.2f}% as given; over {args.seeds} weight sets mean "
          f"{100 * scores.mean():.2f}%, range {100 * scores.min():.2f}-{100 * scores.max():.2f}% "
          f"({sum(len(t.notes) for t in tracks)} notes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
