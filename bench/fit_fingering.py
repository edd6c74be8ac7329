"""Fit the fingering search's weights to the dev songs of the human-tab bench (structured SVM).

    .venv/bin/python bench/fit_fingering.py guitar            # leave-one-song-out, then all dev
    .venv/bin/python bench/fit_fingering.py bass --epochs 30

The search's cost is a weighted sum of named features (`tabagent.fingering_search.FEATURES`:
shape stretch, hand height, open strings, shifts, string crossings...). Each dev track
gives the human's path: the states whose shape puts every note on the human's string and
fret, the hand position chosen by the search itself among those. The fit lowers the
human path's cost below every other path's by a margin of one per note placed elsewhere
(the structured hinge loss, minimised by AdaGrad subgradient steps from the hand-set
weights, optionally held near them by an L2 term). Cross-validation leaves one dev song
out at a time and scores it with the weights fitted on the others; only the dev songs
are read.

Weights printed at the end would go into `tabagent.fretboard` (GUITAR, BASS) by hand,
rounded: the engine ships constants, not this script's output. None has so far: fitted
on four dev songs the weights score the fifth below the hand-set ones (docs/ACCURACY.md).
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

from evalkit.tabcorpus import HumanTrack  # noqa: E402
from tabagent import fingering  # noqa: E402
from tabagent.fingering import _events  # noqa: E402
from tabagent.fingering_search import (  # noqa: E402
    FEATURES,
    STATE_FEATURES,
    Context,
    Layer,
    Search,
    feature_weights,
)
from tabagent.fretboard import Event, Weights, weights_for  # noqa: E402
from tabagent.notes import Note  # noqa: E402

logger = logging.getLogger("bench.fit_fingering")

# Weights the fit leaves alone: hard rules (never cut a sounding note), gates whose zero
# switches a kind of state off, and rare marks with too few examples.
FROZEN = ("ring_block", "bend_open", "reach", "reach_near_nut", "template", "dyad")
N_STATE = len(STATE_FEATURES)


@dataclass
class Item:
    """One dev track ready for fitting: its events, their states, and the human's states."""

    track: HumanTrack
    events: list[Event]
    layers: list[Layer]
    gold: list[np.ndarray]      # per layer: the states that match the human
    wrong: list[np.ndarray]     # per layer and state: notes placed elsewhere than the human
    notes: int


def prepare(track: HumanTrack, weights: Weights) -> Item:
    """Events and states of a track, with the human's states marked."""
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
    human = {id(n): (h.string, h.fret) for h, n in zip(track.notes, notes, strict=True)}
    playable, _ = fingering._split_range(notes, track.tuning)
    events, _ = _events(playable, track.tuning, weights)
    search = Search(track.tuning, weights)
    layers = search.layers(events)
    gold, wrong = [], []
    for event, layer in zip(events, layers, strict=True):
        want = [human[id(n)] for n in event.notes]
        miss = np.zeros(len(layer))
        for k, (s, f) in enumerate(want):
            frets = np.array([event.shapes[i].frets[k] for i in layer.shape])
            miss += (layer.strings[:, k] != s) | (frets != f)
        wrong.append(miss)
        match = np.flatnonzero(miss == 0)
        gold.append(match if len(match) else np.array([int(np.argmin(miss))]))
    return Item(track, events, layers, gold, wrong, len(notes))


def _weights(base: Weights, vector: np.ndarray) -> Weights:
    return dataclasses.replace(base, **{name: float(v) for name, v in zip(FEATURES, vector, strict=True)})


def decode(item: Item, base: Weights, vector: np.ndarray, margin: float = 0.0,
           gold: bool = False) -> tuple[np.ndarray, float, int]:
    """The best path's features, cost and matched notes (against the human) under `vector`."""
    weights = _weights(base, vector)
    search = Search(item.track.tuning, weights)
    layers = []
    for k, layer in enumerate(item.layers):
        layer.static = layer.fixed + layer.features @ vector[:N_STATE]
        layers.append(layer.take(item.gold[k]) if gold else layer)
    extra = None
    if margin and not gold:
        extra = [-margin * w for w in item.wrong]
    start = Context.start(len(item.track.tuning.strings))
    search.run(item.events, start, layers, extra)
    states = search.last_states
    phi = search.path_features(item.events, start, layers, states)
    if gold:
        states = [int(g[s]) for g, s in zip(item.gold, states, strict=True)]
    missed = sum(float(w[s]) for w, s in zip(item.wrong, states, strict=True))
    cost = float(phi[:-1] @ vector + phi[-1])
    return phi[:-1], cost, item.notes - int(missed)


def accuracy(items: Sequence[Item], base: Weights, vector: np.ndarray) -> float:
    """Notes on the human's string and fret, over all items."""
    matched = sum(decode(i, base, vector)[2] for i in items)
    return matched / max(1, sum(i.notes for i in items))


def fit(items: Sequence[Item], base: Weights, epochs: int, rate: float, l2: float, margin: float,
        log: bool = True) -> np.ndarray:
    """Minimise the structured hinge loss over `items` from the weights `base`."""
    w0 = feature_weights(base)
    w = w0.copy()
    free = np.array([name not in FROZEN for name in FEATURES])
    g2 = np.full(len(w), 1e-8)
    best, best_acc = w.copy(), -1.0
    for epoch in range(epochs):
        grad = np.zeros(len(w))
        loss = 0.0
        total = sum(i.notes for i in items)
        for item in items:
            phi_gold, cost_gold, _ = decode(item, base, w, gold=True)
            phi_pred, cost_pred, matched = decode(item, base, w, margin=margin)
            hinge = cost_gold - (cost_pred - margin * (item.notes - matched))
            if hinge > 0:
                loss += hinge
                grad += phi_gold - phi_pred
        grad = grad / total + l2 * (w - w0)
        grad[~free] = 0.0
        g2 += grad**2
        w = w - rate * grad / np.sqrt(g2)
        acc = accuracy(items, base, w)
        if acc > best_acc:
            best, best_acc = w.copy(), acc
        if log:
            logger.info("epoch %d: hinge %.4f per note, train agreement %.2f%%", epoch, loss / total, 100 * acc)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instrument", choices=("guitar", "bass"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--no-cv", action="store_true", help="fit on all dev songs only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    tracks = [t for t in dev_tracks() if t.instrument == args.instrument]
    base = weights_for(tracks[0].tuning)
    items = [prepare(t, base) for t in tracks]
    w0 = feature_weights(base)
    songs = sorted({i.track.song for i in items if i.notes >= 100})
    if not args.no_cv:
        before = after = total = 0
        for song in songs:
            train = [i for i in items if i.track.song != song]
            test = [i for i in items if i.track.song == song]
            w = fit(train, base, args.epochs, args.rate, args.l2, args.margin, log=False)
            n = sum(i.notes for i in test)
            a0, a1 = accuracy(test, base, w0), accuracy(test, base, w)
            before, after, total = before + a0 * n, after + a1 * n, total + n
            logger.info("left out %-32s %5d notes: hand-set %.1f%%, fitted on the rest %.1f%%", song, n,
                        100 * a0, 100 * a1)
        logger.info("cross-validated over the dev songs: hand-set %.2f%%, fitted %.2f%%", 100 * before / total,
                    100 * after / total)
    w = fit(items, base, args.epochs, args.rate, args.l2, args.margin)
    logger.info("all dev: hand-set %.2f%%, fitted %.2f%%", 100 * accuracy(items, base, w0),
                100 * accuracy(items, base, w))
    for name, a, b in zip(FEATURES, w0, w, strict=True):
        if abs(a - b) > 1e-9:
            print(f"    {name}={b:.3g},  # was {a:.3g}")
    logger.info("%.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
