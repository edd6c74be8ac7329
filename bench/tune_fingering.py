"""Tune the fingering weights on the dev songs of the human-tab bench (coordinate search).

    .venv/bin/python bench/tune_fingering.py guitar          # leave-one-song-out, then all dev
    .venv/bin/python bench/tune_fingering.py guitar --no-cv  # all dev only

The objective is the number of notes on the human's string and fret over the dev tracks
of one instrument, plus the notes of the written test pieces (`evalkit.fingering_corpus`)
so that the idioms they hold are not traded away. Each weight in `PARAMS` is tried at a
few values around its current one (scaled, or stepped when it is zero), one weight at a
time, and a value is kept only when it gains at least `--min-gain` notes, which keeps the
search off the noise of single phrases flipping. Cross-validation tunes on all but one
dev song and scores the left-out song, to tell whether what the search finds carries to
a song it did not see. Only the dev songs are read. The weights printed at the end go
into `tabagent.fretboard` by hand, rounded.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fingering_errors import dev_tracks  # noqa: E402

from evalkit.fingering_corpus import PIECES  # noqa: E402
from tabagent import fingering  # noqa: E402
from tabagent.fingering import _Context, _events, _Layer, _Search, feature_weights  # noqa: E402
from tabagent.fretboard import Event, Weights, weights_for  # noqa: E402
from tabagent.notes import Note  # noqa: E402
from tabagent.tuning import Tuning  # noqa: E402

logger = logging.getLogger("bench.tune_fingering")

# The weights the search may move (the rest are hard rules or gates).
PARAMS = (
    "height", "line_height", "open_low", "open_off_key", "open_mid", "open_high", "open_bass_mid", "open_bass_high",
    "stretch", "four_fingers", "skip", "pinch_skip", "held_skip", "inversion", "template", "dyad", "high_fret",
    "shift", "shift_per_fret", "along_shift", "along_shift_per_fret", "from_open_shift", "from_open_shift_per_fret",
    "rest_shift", "crossing", "line_crossing", "parallel", "parallel_held", "repeat_string", "pedal_string",
    "line_same_string", "index_gap", "reach", "reach_near_nut",
)
SCALES = (0.0, 0.5, 0.75, 1.33, 2.0)
STEPS = (-1.0, -0.3, -0.1, 0.1, 0.3, 1.0)


@dataclass
class Item:
    """A track or test piece ready to finger: events built once, the reference fingering per note."""

    name: str
    song: str
    tuning: Tuning
    events: list[Event]
    want: list[list[tuple[int, int]]]
    notes: int


def _item(name: str, song: str, tuning: Tuning, reference: Sequence[Note], weights: Weights) -> Item:
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in reference]
    truth = {id(n): (r.string, r.fret) for r, n in zip(reference, notes, strict=True)}
    playable, _ = fingering._split_range(notes, tuning)
    events, _ = _events(playable, tuning, weights)
    return Item(name, song, tuning, events, [[truth[id(n)] for n in e.notes] for e in events], len(notes))


def items_for(instrument: str) -> tuple[list[Item], list[Item]]:
    """The dev tracks and the written test pieces of one instrument."""
    tracks = [t for t in dev_tracks() if t.instrument == instrument]
    dev = [_item(t.name, t.song, t.tuning, t.notes, weights_for(t.tuning)) for t in tracks]
    pieces = []
    for piece in PIECES:
        if piece.instrument == instrument:
            tuning = piece.tuning_obj()
            pieces.append(_item(piece.name, "pieces", tuning, piece.notes(), weights_for(tuning)))
    return dev, pieces


def matched(item: Item, weights: Weights) -> int:
    """Notes the search places on the reference string and fret with `weights`."""
    search = _Search(item.tuning, weights)
    layers = [_Layer(e, item.tuning, weights, search.priced) for e in item.events]
    path = search.run(item.events, _Context.start(len(item.tuning.strings)), layers)
    count = 0
    for event, want, (k, _) in zip(item.events, item.want, path, strict=True):
        shape = event.shapes[k]
        count += sum((s, f) == w for s, f, w in zip(shape.strings, shape.frets, want, strict=True))
    return count


def score(items: Sequence[Item], weights: Weights) -> int:
    return sum(matched(i, weights) for i in items)


def _candidates(value: float) -> list[float]:
    if value == 0.0:
        return list(STEPS)
    return [round(value * s, 4) for s in SCALES if s != 1.0]


def tune(items: Sequence[Item], base: Weights, sweeps: int, min_gain: int, log: bool = True) -> Weights:
    """Coordinate search from `base`: keep a changed weight only when it gains `min_gain` notes."""
    best = base
    best_score = score(items, best)
    for sweep in range(sweeps):
        changed = False
        for name in PARAMS:
            for value in _candidates(getattr(best, name)):
                trial = dataclasses.replace(best, **{name: value})
                got = score(items, trial)
                if got >= best_score + min_gain:
                    if log:
                        logger.info("sweep %d: %s %.3g -> %.3g: %d -> %d notes", sweep, name, getattr(best, name),
                                    value, best_score, got)
                    best, best_score, changed = trial, got, True
        if not changed:
            break
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instrument", choices=("guitar", "bass"))
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--min-gain", type=int, default=10)
    parser.add_argument("--no-cv", action="store_true", help="tune on all dev songs only")
    parser.add_argument("--no-pieces", action="store_true", help="leave the written test pieces out of the objective")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    dev, pieces = items_for(args.instrument)
    if args.no_pieces:
        pieces = []
    base = weights_for(dev[0].tuning)
    songs = sorted({i.song for i in dev if i.notes >= 100})
    if not args.no_cv:
        before = after = total = 0
        for song in songs:
            train = [i for i in dev if i.song != song] + pieces
            test = [i for i in dev if i.song == song]
            tuned = tune(train, base, args.sweeps, args.min_gain, log=False)
            n = sum(i.notes for i in test)
            a0, a1 = score(test, base), score(test, tuned)
            before, after, total = before + a0, after + a1, total + n
            logger.info("left out %-32s %5d notes: hand-set %.1f%%, tuned on the rest %.1f%%", song, n,
                        100 * a0 / n, 100 * a1 / n)
        logger.info("cross-validated over the dev songs: hand-set %.2f%%, tuned %.2f%%", 100 * before / total,
                    100 * after / total)
    tuned = tune(dev + pieces, base, args.sweeps, args.min_gain)
    n_dev, n_pieces = sum(i.notes for i in dev), sum(i.notes for i in pieces)
    logger.info("all dev: hand-set %.2f%%, tuned %.2f%%; pieces %.1f%% -> %.1f%%",
                100 * score(dev, base) / n_dev, 100 * score(dev, tuned) / n_dev,
                100 * score(pieces, base) / max(1, n_pieces), 100 * score(pieces, tuned) / max(1, n_pieces))
    w0, w1 = feature_weights(base), feature_weights(tuned)
    for name in PARAMS:
        if getattr(base, name) != getattr(tuned, name):
            print(f"    {name}={getattr(tuned, name):.3g},  # was {getattr(base, name):.3g}")
    logger.info("%d weights changed in %.0f s", int(np.sum(w0 != w1)), time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
