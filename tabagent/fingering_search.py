"""The fingering search: each event's states, the costs between them, and the Viterbi over them.

A state is one of an event's shapes (`tabagent.fretboard`) held with the hand at one
position (the index finger's fret). A state costs its shape's own features plus where
the hand is (height on the neck, open strings under it, a pinky reaching past the box);
a move between two states costs position shifts, string crossings, cutting a note that
still sounds on its string, and moving a repeated pitch to another string. Every cost is
a named feature (`FEATURES`) times the `Weights` field of the same name, so a path's
cost splits into its terms (`Search.path_features`, used by bench/fingering_errors.py
--costs and bench/fit_fingering.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tabagent.fretboard import SHAPE_FEATURES, Event, Weights
from tabagent.notes import Note
from tabagent.tuning import Tuning

_LEGATO = ("hammer_on", "pull_off", "slide")
_RING_TOLERANCE = 0.01  # overlaps shorter than this are transcription slop, not a held note
_RING_RAMP = 0.1


@dataclass
class Context:
    """What the search remembers along one path: hand, strings still sounding, habits."""

    p: int
    centroid: float
    busy: np.ndarray          # (strings,) end time of the last note on each string
    last_string: np.ndarray   # (128,) string each pitch was last played on, -1 if never
    last_time: np.ndarray     # (128,) when
    prev_strings: dict[int, int]  # pitch -> string in the previous event
    onset: float | None = None    # the previous event's onset

    @classmethod
    def start(cls, n_strings: int) -> Context:
        return cls(
            -1, -1.0, np.full(n_strings, -np.inf), np.full(128, -1, np.int16),
            np.full(128, -np.inf), {},
        )

    def advance(self, event: Event, shape_index: int, p: int) -> Context:
        shape = event.shapes[shape_index]
        ctx = copy.deepcopy(self)
        ctx.p = p
        ctx.onset = event.onset
        ctx.centroid = float(np.mean(shape.strings))
        ctx.prev_strings = {}
        for note, s in zip(event.notes, shape.strings, strict=True):
            ctx.busy[s] = note.end
            ctx.last_string[note.pitch] = s
            ctx.last_time[note.pitch] = note.start
            ctx.prev_strings[note.pitch] = s
        return ctx


# Features of a state (a shape held at a hand position) beyond the shape's own, and of a
# move between two states; each is priced by the Weights field of the same name.
POSITION_FEATURES = (
    "height", "line_height", "open_low", "open_off_key", "open_mid", "open_high", "reach", "reach_near_nut",
    "lead_low",
)
STATE_FEATURES = (*SHAPE_FEATURES, *POSITION_FEATURES)
MOVE_FEATURES = (
    "shift", "shift_per_fret", "along_shift", "along_shift_per_fret", "crossing", "line_crossing",
    "ring_block", "parallel", "repeat_string", "legato_string",
)
FEATURES = (*STATE_FEATURES, *MOVE_FEATURES)
_COL = {name: i for i, name in enumerate(STATE_FEATURES)}


def feature_weights(weights: Weights) -> np.ndarray:
    """The weights of `FEATURES`, in order: the search's cost is these times the features."""
    return np.array([float(getattr(weights, name)) for name in FEATURES])


class Layer:
    """The states of one event as arrays: one state per (shape, hand position)."""

    def __init__(self, event: Event, tuning: Tuning, weights: Weights, priced: np.ndarray | None = None) -> None:
        top = max(tuning.frets, 1)
        chord = len(event.notes) > 1
        n_shape = len(SHAPE_FEATURES)
        blocks: list[np.ndarray] = []
        shape_ix: list[np.ndarray] = []
        ps: list[np.ndarray] = []
        fixed: list[np.ndarray] = []
        for k, shape in enumerate(event.shapes):
            lo, hi = (shape.p_lo, shape.p_hi) if shape.p_lo else (1, top)
            # A single fretted note may also lie one fret above the box, under a stretched
            # pinky, rather than move the hand (first position keeps its open strings).
            reach = bool(weights.reach) and len(shape.frets) == 1 and shape.p_lo > 1
            p = np.arange(lo - 1 if reach else lo, hi + 1)
            f = np.zeros((len(p), len(STATE_FEATURES)))
            if shape.features:
                f[:, :n_shape] = shape.features
            f[:, _COL["height" if chord else "line_height"]] = p - 1
            if shape.n_open:
                low = p <= weights.open_position
                f[:, _COL["open_low" if event.open_key else "open_off_key"]] = shape.n_open * low
                # A lead line rings open strings under a hand up the neck (a pedal note
                # between fretted ones) more freely than chords do.
                up = shape.n_open * ~low * (weights.lead_open_up if event.lead else 1.0)
                f[:, _COL["open_mid"]] = up
                f[:, _COL["open_high"]] = up * np.maximum(p - weights.open_position - 1, 0)
            if event.lead:
                # A lead line sits in a box up the neck (`tabagent.fingering_lead`); an open
                # string there costs the same as a fretted note, else the cost would push
                # the line onto open strings in a low box.
                f[:, _COL["lead_low"]] = np.maximum(weights.lead_from - p, 0)
            if reach:
                # Frets are wider near the nut: the pinky's reach costs more there.
                near = lo - 1 + tuning.capo < weights.reach_low_below
                f[0, _COL["reach_near_nut" if near else "reach"]] = 1.0
            blocks.append(f)
            shape_ix.append(np.full(len(p), k))
            ps.append(p)
            fixed.append(np.full(len(p), 0.0 if shape.features else shape.cost))
        if priced is None:
            priced = feature_weights(weights)
        self.event = event
        self.shape = np.concatenate(shape_ix).astype(np.int32)
        self.p = np.concatenate(ps).astype(np.int32)
        self.features = np.concatenate(blocks)
        self.fixed = np.concatenate(fixed)
        self.static = self.fixed + self.features @ priced[: len(STATE_FEATURES)]
        n = len(self.shape)
        self.strings = np.array([event.shapes[k].strings for k in self.shape], dtype=np.int32).reshape(n, -1)
        self.frets = np.array([event.shapes[k].frets for k in self.shape], dtype=np.int32).reshape(n, -1)
        self.mask = np.zeros((n, len(tuning.strings)))
        rows_ix = np.repeat(np.arange(n), len(event.notes))
        self.mask[rows_ix, self.strings.ravel()] = 1.0
        self.centroid = self.strings.mean(axis=1)

    def take(self, rows: np.ndarray) -> Layer:
        """The layer with only the states `rows`."""
        out = copy.copy(self)
        for name in ("shape", "p", "features", "fixed", "static", "strings", "frets", "mask", "centroid"):
            setattr(out, name, getattr(self, name)[rows])
        return out

    def __len__(self) -> int:
        return len(self.shape)


class Search:
    """Viterbi over events from a known starting context."""

    def __init__(self, tuning: Tuning, weights: Weights) -> None:
        self.tuning = tuning
        self.weights = weights
        self.priced = feature_weights(weights)
        self.move_weights = {name: float(getattr(weights, name)) for name in MOVE_FEATURES}
        self.last_cost = 0.0
        self.last_states: list[int] = []

    def layers(self, events: Sequence[Event]) -> list[Layer]:
        """Every event's states."""
        return [Layer(event, self.tuning, self.weights, self.priced) for event in events]

    def run(
        self,
        events: Sequence[Event],
        start: Context,
        layers: Sequence[Layer] | None = None,
        extra: Sequence[np.ndarray] | None = None,
    ) -> list[tuple[int, int]]:
        """The best (shape index, hand position) per event.

        Args:
            events: the events, in time order.
            start: the context before the first event.
            layers: the events' layers, when already built (or narrowed to some states).
            extra: a cost added to each layer's states (the margin when fitting weights).

        Returns:
            The path; `last_states` keeps its state index per layer and `last_cost` its cost.
        """
        layers = list(layers) if layers is not None else self.layers(events)
        back: list[np.ndarray] = []
        acc = np.zeros(1)
        walk = Walk(start)
        for i, (event, layer) in enumerate(zip(events, layers, strict=True)):
            cost = np.zeros((len(acc), len(layer)))
            for name, value in walk.moves(event, layer, self.weights).items():
                weight = self.move_weights[name]
                if weight:
                    cost += weight * value
            total = acc[:, None] + cost
            best = np.argmin(total, axis=0)
            acc = total[best, np.arange(len(layer))] + layer.static
            if extra is not None:
                acc = acc + extra[i]
            back.append(best)
            walk.advance(event, layer, best)
        if not layers:
            return []
        state = int(np.argmin(acc))
        self.last_cost = float(acc[state])  # the chosen path's total cost, for diagnostics
        path: list[tuple[int, int]] = []
        states: list[int] = []
        for layer, best in zip(reversed(layers), reversed(back), strict=True):
            path.append((int(layer.shape[state]), int(layer.p[state])))
            states.append(state)
            state = int(best[state])
        path.reverse()
        self.last_states = states[::-1]
        return path

    def path_features(
        self, events: Sequence[Event], start: Context, layers: Sequence[Layer], states: Sequence[int]
    ) -> np.ndarray:
        """The summed `FEATURES` along one path (a state per layer), its fixed costs appended."""
        total = np.zeros(len(FEATURES) + 1)
        walk = Walk(start)
        n_state = len(STATE_FEATURES)
        for event, layer, state in zip(events, layers, states, strict=True):
            one = layer.take(np.array([state]))
            for name, value in walk.moves(event, one, self.weights).items():
                total[n_state + MOVE_FEATURES.index(name)] += float(value[0, 0])
            total[:n_state] += one.features[0]
            total[-1] += float(one.fixed[0])
            walk.advance(event, one, np.zeros(1, dtype=np.int64))
        return total


class Walk:
    """What the search remembers along each path to the states of the last layer."""

    def __init__(self, start: Context) -> None:
        self.prev_p = np.array([start.p])
        self.prev_centroid = np.array([start.centroid])
        self.busy = start.busy[None, :].copy()
        self.last_string = start.last_string[None, :].copy()
        self.last_time = start.last_time[None, :].copy()
        self.prev_pitches = list(start.prev_strings)
        self.prev_note_strings = np.array([[start.prev_strings[q] for q in self.prev_pitches]], dtype=np.int32)
        self.prev_onset = start.onset

    def moves(self, event: Event, layer: Layer, w: Weights) -> dict[str, np.ndarray]:
        """The `MOVE_FEATURES` from every remembered state to every state of `layer` (absent: zero)."""
        out: dict[str, np.ndarray] = {}
        onset = event.onset
        # Hand moves: cheaper after a long gap, free from an unknown start.
        gap = onset - self.prev_onset if self.prev_onset is not None else 0.0
        slow = 1.0 / (1.0 + max(0.0, gap - 0.25))
        d = np.abs(self.prev_p[:, None] - layer.p[None, :]).astype(float)
        moved = (d > 0) * slow
        moved[self.prev_p < 0, :] = 0.0
        line = len(event.notes) == 1 and len(self.prev_pitches) == 1
        if line:
            # A single-note line moving along one string: the hand slides with it.
            along = self.prev_note_strings[:, :1] == layer.strings[:, 0][None, :]
            out["along_shift"] = moved * along
            out["along_shift_per_fret"] = moved * along * d
            moved = moved * ~along
        out["shift"] = moved
        out["shift_per_fret"] = moved * d
        cross = np.abs(self.prev_centroid[:, None] - layer.centroid[None, :])
        cross[self.prev_centroid < 0, :] = 0.0
        out["line_crossing" if line else "crossing"] = cross
        # A string still sounding: taking it cuts that note short.
        overlap = np.clip((self.busy - onset - _RING_TOLERANCE) / _RING_RAMP, 0.0, 1.0)
        out["ring_block"] = overlap @ layer.mask.T
        if _parallel(self.prev_pitches, event.notes):
            same = (self.prev_note_strings[:, None, :] == layer.strings[None, :, :]).all(axis=2)
            out["parallel"] = same * 1.0
        repeat = np.zeros((len(self.prev_p), len(layer)))
        legato = np.zeros_like(repeat)
        for k, note in enumerate(event.notes):
            s_k = layer.strings[:, k][None, :]
            ls = self.last_string[:, note.pitch][:, None]
            recent = (onset - self.last_time[:, note.pitch] < w.repeat_window)[:, None]
            repeat += recent & (ls >= 0) & (ls != s_k)
            src_note = _legato_source(self.prev_pitches, note)
            if src_note >= 0:
                src = self.prev_note_strings[:, src_note][:, None]
                legato += src != s_k
        out["repeat_string"] = repeat
        out["legato_string"] = legato
        return out

    def advance(self, event: Event, layer: Layer, best: np.ndarray) -> None:
        """Carry each new state's path memory forward from its best predecessor."""
        self.busy = self.busy[best].copy()
        self.last_string = self.last_string[best].copy()
        self.last_time = self.last_time[best].copy()
        rows = np.arange(len(layer))
        for k, note in enumerate(event.notes):
            self.busy[rows, layer.strings[:, k]] = note.end
            self.last_string[:, note.pitch] = layer.strings[:, k]
            self.last_time[:, note.pitch] = note.start
        self.prev_pitches = [n.pitch for n in event.notes]
        self.prev_note_strings = layer.strings
        self.prev_p = layer.p
        self.prev_centroid = layer.centroid
        self.prev_onset = event.onset


def _parallel(prev_pitches: Sequence[int], notes: Sequence[Note]) -> bool:
    """Whether an event repeats the previous chord's intervals (the same shape, moved)."""
    if len(notes) < 2 or len(prev_pitches) != len(notes):
        return False
    base = notes[0].pitch - prev_pitches[0]
    return all(n.pitch - p == base for n, p in zip(notes, prev_pitches, strict=True))


def _legato_source(prev_pitches: Sequence[int], note: Note) -> int:
    """Index of the previous event's note that a hammer-on, pull-off or slide continues."""
    if not prev_pitches or not any(t in note.techniques for t in _LEGATO):
        return -1
    near = [(abs(p - note.pitch), i) for i, p in enumerate(prev_pitches) if 0 < abs(p - note.pitch) <= 7]
    return min(near)[1] if near else -1
