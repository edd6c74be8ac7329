"""Places notes on strings and frets like a player would: a Viterbi search over hand shapes.

`assign` fingers a whole piece; `StreamingFingerer` fingers notes as they arrive with a
bounded look-ahead (fixed-lag Viterbi) and releases each once it is final; `finger_json`
is the same for the JSON form the CLI and the SDK use.

Notes struck together form an event (`tabagent.fretboard.group_events`); each event has
a list of shapes, each shape a range of hand positions. The search picks one (shape,
position) per event minimising the shapes' own costs plus the cost of moving between
them: position shifts, string crossings, cutting a note that still sounds on its string,
and moving a repeated pitch to another string. Never two sounding notes on one string:
when nothing else fits, the earlier note is cut where the next one starts.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.fretboard import (
    CHORD_GAP,
    CHORD_SPREAD,
    KEY_AFTER,
    KEY_BEFORE,
    Event,
    Weights,
    build_event,
    event_chroma,
    group_events,
    open_key_flags,
    weights_for,
)
from tabagent.notes import Note, sort_notes
from tabagent.tuning import Tuning

logger = logging.getLogger(__name__)

_LEGATO = ("hammer_on", "pull_off", "slide")
_RING_TOLERANCE = 0.01  # overlaps shorter than this are transcription slop, not a held note
_RING_RAMP = 0.1


@dataclass
class FingeringResult:
    """Fingered notes in time order, and the notes that could not be placed.

    `out_of_range` holds notes outside every string's range and notes of a chord with
    more simultaneous notes than the strings can hold; they keep string = fret = -1.
    """

    notes: list[Note] = field(default_factory=list)
    out_of_range: list[Note] = field(default_factory=list)

    def extend(self, other: FingeringResult) -> None:
        self.notes.extend(other.notes)
        self.out_of_range.extend(other.out_of_range)


@dataclass
class _Context:
    """What the search remembers along one path: hand, strings still sounding, habits."""

    p: int
    centroid: float
    busy: np.ndarray          # (strings,) end time of the last note on each string
    last_string: np.ndarray   # (128,) string each pitch was last played on, -1 if never
    last_time: np.ndarray     # (128,) when
    prev_strings: dict[int, int]  # pitch -> string in the previous event
    onset: float | None = None    # the previous event's onset

    @classmethod
    def start(cls, n_strings: int) -> _Context:
        return cls(
            -1, -1.0, np.full(n_strings, -np.inf), np.full(128, -1, np.int16),
            np.full(128, -np.inf), {},
        )

    def advance(self, event: Event, shape_index: int, p: int) -> _Context:
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


class _Layer:
    """The states of one event as arrays: one state per (shape, hand position)."""

    def __init__(self, event: Event, tuning: Tuning, weights: Weights) -> None:
        shape_ix: list[int] = []
        ps: list[int] = []
        costs: list[float] = []
        top = max(tuning.frets, 1)
        height = weights.height if len(event.notes) > 1 else weights.line_height
        for k, shape in enumerate(event.shapes):
            lo, hi = (shape.p_lo, shape.p_hi) if shape.p_lo else (1, top)
            # A single fretted note may also lie one fret above the box, under a stretched
            # pinky, rather than move the hand (first position keeps its open strings).
            reach = bool(weights.reach) and len(shape.frets) == 1 and shape.p_lo > 1
            for p in range(lo - 1 if reach else lo, hi + 1):
                shape_ix.append(k)
                ps.append(p)
                costs.append(
                    shape.cost + height * (p - 1) + shape.n_open * _open_cost(p, event.open_key, weights)
                    + (_reach_cost(p, tuning.capo, weights) if p < lo else 0.0)
                )
        self.event = event
        self.shape = np.array(shape_ix, dtype=np.int32)
        self.p = np.array(ps, dtype=np.int32)
        self.static = np.array(costs)
        strings = np.array([event.shapes[k].strings for k in shape_ix], dtype=np.int32)
        self.strings = strings.reshape(len(shape_ix), len(event.notes))  # (S, notes)
        self.mask = np.zeros((len(shape_ix), len(tuning.strings)))
        rows = np.repeat(np.arange(len(shape_ix)), len(event.notes))
        self.mask[rows, self.strings.ravel()] = 1.0
        self.centroid = self.strings.mean(axis=1)

    def __len__(self) -> int:
        return len(self.shape)


def _reach_cost(p: int, capo: int, w: Weights) -> float:
    """A pinky stretched one fret past the box; frets are wider near the nut."""
    return w.reach * (w.reach_low if p + capo < w.reach_low_below else 1.0)


def _open_cost(p: int, open_key: bool, w: Weights) -> float:
    if p <= w.open_position:
        return w.open_low if open_key else w.open_off_key
    return w.open_mid + w.open_high * (p - w.open_position - 1)


class _Search:
    """Viterbi over events from a known starting context."""

    def __init__(self, tuning: Tuning, weights: Weights) -> None:
        self.tuning = tuning
        self.weights = weights
        self.last_cost = 0.0

    def run(self, events: Sequence[Event], start: _Context) -> list[tuple[int, int]]:
        """The best (shape index, hand position) per event."""
        w = self.weights
        # Per-state path memory of the previous layer.
        prev_p = np.array([start.p])
        prev_centroid = np.array([start.centroid])
        busy = start.busy[None, :].copy()
        last_string = start.last_string[None, :].copy()
        last_time = start.last_time[None, :].copy()
        prev_pitches = list(start.prev_strings)
        prev_note_strings = np.array([[start.prev_strings[q] for q in prev_pitches]], dtype=np.int32)
        prev_onset = start.onset
        acc = np.zeros(1)
        back: list[np.ndarray] = []
        layers: list[_Layer] = []
        for event in events:
            layer = _Layer(event, self.tuning, w)
            layers.append(layer)
            onset = event.onset
            cost = np.zeros((len(acc), len(layer)))
            # Hand moves: cheaper after a long gap, free from an unknown start.
            gap = onset - prev_onset if prev_onset is not None else 0.0
            slow = 1.0 / (1.0 + max(0.0, gap - 0.25))
            d = np.abs(prev_p[:, None] - layer.p[None, :])
            move = np.where(d > 0, w.shift + w.shift_per_fret * d, 0.0) * slow
            if len(event.notes) == 1 and len(prev_pitches) == 1:
                # A single-note line moving along one string: the hand slides with it.
                along = prev_note_strings[:, :1] == layer.strings[:, 0][None, :]
                move = np.where(along, move * w.slide_shift, move)
            move[prev_p < 0, :] = 0.0
            cost += move
            line = len(event.notes) == 1 and len(prev_pitches) == 1
            cross = np.abs(prev_centroid[:, None] - layer.centroid[None, :]) * (w.line_crossing if line else w.crossing)
            cross[prev_centroid < 0, :] = 0.0
            cost += cross
            # A string still sounding: taking it cuts that note short.
            overlap = np.clip((busy - onset - _RING_TOLERANCE) / _RING_RAMP, 0.0, 1.0) * w.ring_block
            cost += overlap @ layer.mask.T
            if _parallel(prev_pitches, event.notes):
                same = (prev_note_strings[:, None, :] == layer.strings[None, :, :]).all(axis=2)
                cost += w.parallel * same
            for k, note in enumerate(event.notes):
                s_k = layer.strings[:, k][None, :]
                ls = last_string[:, note.pitch][:, None]
                recent = (onset - last_time[:, note.pitch] < w.repeat_window)[:, None]
                cost += w.repeat_string * (recent & (ls >= 0) & (ls != s_k))
                src_note = _legato_source(prev_pitches, note)
                if src_note >= 0:
                    src = prev_note_strings[:, src_note][:, None]
                    cost += w.legato_string * (src != s_k)
            total = acc[:, None] + cost
            best = np.argmin(total, axis=0)
            acc = total[best, np.arange(len(layer))] + layer.static
            back.append(best)
            # Carry each new state's path memory forward from its best predecessor.
            busy = busy[best].copy()
            last_string = last_string[best].copy()
            last_time = last_time[best].copy()
            rows = np.arange(len(layer))
            for k, note in enumerate(event.notes):
                busy[rows, layer.strings[:, k]] = note.end
                last_string[:, note.pitch] = layer.strings[:, k]
                last_time[:, note.pitch] = note.start
            prev_pitches = [n.pitch for n in event.notes]
            prev_note_strings = layer.strings
            prev_p = layer.p
            prev_centroid = layer.centroid
            prev_onset = onset
        if not layers:
            return []
        state = int(np.argmin(acc))
        self.last_cost = float(acc[state])  # the chosen path's total cost, for diagnostics
        path: list[tuple[int, int]] = []
        for layer, best in zip(reversed(layers), reversed(back), strict=True):
            path.append((int(layer.shape[state]), int(layer.p[state])))
            state = int(best[state])
        path.reverse()
        return path


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


def _apply(event: Event, shape_index: int) -> None:
    shape = event.shapes[shape_index]
    for note, s, f in zip(event.notes, shape.strings, shape.frets, strict=True):
        note.string, note.fret = s, f


def _split_range(notes: Iterable[Note], tuning: Tuning) -> tuple[list[Note], list[Note]]:
    playable, out = [], []
    for note in sort_notes(notes):
        if tuning.playable(note.pitch):
            playable.append(note)
        else:
            note.string, note.fret = -1, -1
            out.append(note)
    return playable, out


def _trim(notes: Sequence[Note], n_strings: int) -> None:
    """Cut each note where the next note on its string starts."""
    last: list[Note | None] = [None] * n_strings
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        held = last[note.string]
        if held is not None and held.end > note.start:
            held.end = max(held.start, note.start)
        last[note.string] = note


def _events(notes: list[Note], tuning: Tuning, weights: Weights) -> tuple[list[Event], list[Note]]:
    events, dropped = [], []
    for group in group_events(notes):
        event = build_event(group, tuning, weights)
        for note in event.dropped:
            note.string, note.fret = -1, -1
        dropped.extend(event.dropped)
        if event.notes:
            events.append(event)
    _mark_keys(events, tuning)
    return events, dropped


def _mark_keys(events: Sequence[Event], tuning: Tuning, history: Sequence[Event] = ()) -> None:
    """Set each event's open_key flag from the local key (history gives earlier context)."""
    context = [*history, *events]
    if not context:
        return
    chroma = np.array([event_chroma(e.notes) for e in context])
    flags = open_key_flags([e.onset for e in context], chroma, tuning)
    for event, flag in zip(events, flags[len(history) :], strict=True):
        event.open_key = flag


def assign(notes: Iterable[Note], tuning: Tuning, weights: Weights | None = None) -> FingeringResult:
    """Finger a whole piece.

    Args:
        notes: notes with pitch/start/end (techniques, if marked, are honoured); they are
            modified in place: string and fret set, and an end cut where a later note
            takes the string.
        tuning: the instrument's tuning (capo and max fret included; frets are relative
            to the capo).
        weights: cost weights; defaults to the tuning's instrument.

    Returns:
        The fingered notes in time order and the notes that could not be placed.
    """
    weights = weights or weights_for(tuning)
    playable, out = _split_range(notes, tuning)
    events, dropped = _events(playable, tuning, weights)
    path = _Search(tuning, weights).run(events, _Context.start(len(tuning.strings)))
    for event, (k, _) in zip(events, path, strict=True):
        _apply(event, k)
    placed = [n for e in events for n in e.notes]
    _trim(placed, len(tuning.strings))
    return FingeringResult(sort_notes(placed), sort_notes(out + dropped))


def lowest_fret(notes: Iterable[Note], tuning: Tuning) -> FingeringResult:
    """The naive baseline: each note on the position with the lowest fret.

    Args:
        notes: notes to place, modified in place.
        tuning: the instrument.

    Returns:
        The placed notes and those out of range. Chords may collide on a string.
    """
    playable, out = _split_range(notes, tuning)
    for note in playable:
        note.string, note.fret = min(tuning.positions(note.pitch), key=lambda sf: (sf[1], -sf[0]))
    return FingeringResult(playable, out)


class StreamingFingerer:
    """Fingers notes arriving in time order with a bounded look-ahead (fixed-lag Viterbi).

    Each push re-runs the search over the events not yet committed, starting from the
    committed path's state; events older than the look-ahead are committed. A note is
    released once committed and no later note can cut it short (it ends before the first
    uncommitted event starts), or at `flush`.

    Args:
        tuning: the instrument.
        lag_seconds: how far behind the newest final onset an event is committed.
        lag_events: the number of later events an event waits for at least, unless it
            is older than `lag_seconds`.
        weights: cost weights; defaults to the tuning's instrument.
    """

    def __init__(
        self,
        tuning: Tuning,
        lag_seconds: float = 8.0,
        lag_events: int = 32,
        weights: Weights | None = None,
    ) -> None:
        self.tuning = tuning
        self.weights = weights or weights_for(tuning)
        self.lag_seconds = lag_seconds
        self.lag_events = lag_events
        self._search = _Search(tuning, self.weights)
        self._context = _Context.start(len(tuning.strings))
        self._incoming: list[Note] = []       # notes not yet grouped into a closed event
        self._events: list[Event] = []        # closed, uncommitted events
        self._held: list[Note] = []           # committed notes that may still be cut
        self._history: list[Event] = []       # committed events still in the key window
        self._last: list[Note | None] = [None] * len(tuning.strings)

    def push(self, notes: Iterable[Note], final_until: float) -> FingeringResult:
        """Add notes that start before `final_until`; return those now final.

        Args:
            notes: new notes (any order); later pushes only bring notes starting at or
                after `final_until`.
            final_until: every note starting before this time has been pushed.

        Returns:
            Notes now fingered for good, and notes that cannot be placed.
        """
        out = FingeringResult()
        playable, out.out_of_range = _split_range(notes, self.tuning)
        self._incoming = sort_notes(self._incoming + playable)
        # Events whose notes can no longer be joined by a later note are closed.
        keep: list[Note] = []
        for group in group_events(self._incoming):
            if keep or not _closed(group, final_until):
                keep.extend(group)
            else:
                event = build_event(group, self.tuning, self.weights)
                for note in event.dropped:
                    note.string, note.fret = -1, -1
                out.out_of_range.extend(event.dropped)
                if event.notes:
                    self._events.append(event)
        self._incoming = keep
        # Notes should arrive in time order; keep the search ordered if one came late.
        self._events.sort(key=lambda e: e.onset)
        self._commit(final_until, out)
        return out

    def flush(self) -> FingeringResult:
        """Finger and release everything still held (end of stream)."""
        out = FingeringResult()
        for group in group_events(self._incoming):
            event = build_event(group, self.tuning, self.weights)
            for note in event.dropped:
                note.string, note.fret = -1, -1
            out.out_of_range.extend(event.dropped)
            if event.notes:
                self._events.append(event)
        self._incoming = []
        self._commit(None, out)
        out.notes.extend(self._held)
        self._held = []
        out.notes = sort_notes(out.notes)
        return out

    def _commit(self, final_until: float | None, out: FingeringResult) -> None:
        if not self._events:
            return
        _mark_keys(self._events, self.tuning, self._history)
        path = self._search.run(self._events, self._context)
        n = len(self._events)
        if final_until is None:
            count = n
        else:
            count = 0
            for i, event in enumerate(self._events):
                dense = n - 1 - i >= self.lag_events and event.onset < final_until - KEY_AFTER
                if dense or event.onset < final_until - self.lag_seconds:
                    count = i + 1
                else:
                    break
        for event, (k, p) in zip(self._events[:count], path[:count], strict=True):
            _apply(event, k)
            self._context = self._context.advance(event, k, p)
            for note in event.notes:
                held = self._last[note.string]
                if held is not None and held.end > note.start:
                    held.end = max(held.start, note.start)
                self._last[note.string] = note
                self._held.append(note)
        self._history.extend(self._events[:count])
        self._events = self._events[count:]
        if self._history:
            keep_from = (self._events[0].onset if self._events else self._history[-1].onset) - KEY_BEFORE
            self._history = [e for e in self._history if e.onset >= keep_from]
        horizon = self._events[0].onset if self._events else None
        if final_until is not None and horizon is None:
            horizon = final_until
        if horizon is None:
            return
        ready = [n for n in self._held if n.end <= horizon]
        self._held = [n for n in self._held if n.end > horizon]
        out.notes.extend(sort_notes(ready))


def _closed(group: Sequence[Note], final_until: float) -> bool:
    """Whether no note starting at or after `final_until` could still join the event."""
    first = min(n.start for n in group)
    last = max(n.start for n in group)
    return (
        final_until - last > CHORD_GAP
        or final_until - first > CHORD_SPREAD
        or all(n.end <= final_until for n in group)
    )


def infer_instrument(strings: Sequence[int]) -> str:
    """"bass" when the highest open string is at most E3 (every bass tuning), else "guitar"."""
    return "bass" if strings and max(strings) <= 52 else "guitar"


def _tuning_from(data: dict[str, Any], tuning: Tuning | str | Sequence[int] | None, capo: int | None) -> Tuning:
    """The Tuning to use: the argument, else the JSON's, else the instrument's standard."""
    given = data.get("instrument")
    capo = int(capo if capo is not None else data.get("capo", 0) or 0)
    max_fret = data.get("max_fret")
    if isinstance(tuning, Tuning):
        if capo in (0, tuning.capo):
            return tuning
        return Tuning(tuning.strings, capo, tuning.max_fret, tuning.name, tuning.instrument)
    spec = tuning if tuning is not None else data.get("tuning")
    if spec is None or spec == "" or spec == []:
        return tunings.named(str(given or "guitar"), "standard", capo, max_fret)
    if isinstance(spec, str):
        parsed = tunings.parse(spec, str(given or "guitar"), capo, max_fret)
        strings = parsed.strings
        if given or parsed.name != "custom":
            return parsed
    else:
        try:
            strings = tuple(
                int(p) if isinstance(p, int | float) or str(p).strip().lstrip("-").isdigit()
                else tunings.note_name_to_midi(str(p))
                for p in spec
            )
        except (TypeError, ValueError):
            raise BadConfig(f"tuning must list open-string MIDI pitches or note names, got {spec!r}") from None
    instrument = str(given or infer_instrument(strings))
    name = tunings._name_of(instrument, strings)
    default_max = tunings.DEFAULT_MAX_FRET.get(instrument, 24)
    return tunings.Tuning(strings, capo, max_fret or default_max, name, instrument)


def finger_json(
    data: dict[str, Any],
    tuning: Tuning | str | Sequence[int] | None = None,
    capo: int | None = None,
) -> dict[str, Any]:
    """Finger notes given as JSON, as `tabagent fingering` does.

    Args:
        data: ``{"tuning": [40, 45, ...], "capo": 0, "instrument": "guitar",
            "notes": [{"pitch": 64, "start": 0.0, "end": 0.5}, ...]}``; only ``notes``
            is required.
        tuning: overrides ``data["tuning"]``: a Tuning, a spec such as "drop_d" or
            "40,45,50,55,59,64", or open-string MIDI pitches (lowest first).
        capo: overrides ``data["capo"]``; frets in the output are relative to the capo.

    Returns:
        A copy of `data` whose notes (same order, other fields kept) carry ``string``
        (0 = lowest) and ``fret``, with ``end`` cut where a later note takes the string;
        ``out_of_range`` lists the notes that could not be placed (with their ``index``
        in ``notes``; they keep string = fret = -1); ``tuning``, ``capo`` and
        ``instrument`` are the ones used (a tuning whose top string is at most E3 is a
        bass unless ``instrument`` says otherwise).

    Raises:
        tabagent.errors.BadConfig: on a malformed tuning or note.
    """
    resolved = _tuning_from(data, tuning, capo)
    raw = data.get("notes")
    if not isinstance(raw, list):
        raise BadConfig('expected {"notes": [{"pitch", "start", "end"}, ...]}')
    notes: list[Note] = []
    for i, item in enumerate(raw):
        try:
            pitch, start = int(item["pitch"]), float(item["start"])
            end = float(item.get("end", start + 0.25))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadConfig(f"note {i}: needs numeric pitch, start and end ({exc})") from None
        technique = str(item.get("technique", "") or "")
        notes.append(Note(pitch, start, max(end, start), float(item.get("velocity", 0.8)), technique=technique))
    result = assign(notes, resolved)
    index = {id(n): i for i, n in enumerate(notes)}
    out_notes = []
    for item, note in zip(raw, notes, strict=True):
        d = dict(item)
        d["string"], d["fret"] = int(note.string), int(note.fret)
        if "end" in item and note.string >= 0 and note.end < float(item["end"]) - 1e-9:
            d["end"] = round(note.end, 6)
        out_notes.append(d)
    out = dict(data)
    out["tuning"] = list(resolved.strings)
    out["capo"] = resolved.capo
    out["instrument"] = resolved.instrument
    out["notes"] = out_notes
    out["out_of_range"] = [dict(raw[index[id(n)]], index=index[id(n)]) for n in result.out_of_range]
    return out
