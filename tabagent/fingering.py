"""Places notes on strings and frets like a player would: a Viterbi search over hand shapes.

`assign` fingers a whole piece; `StreamingFingerer` fingers notes as they arrive with a
bounded look-ahead (fixed-lag Viterbi) and releases each once it is final; `finger_json`
is the same for the JSON form the CLI and the SDK use.

Notes struck together form an event (`tabagent.fretboard.group_events`); each event has
a list of shapes, each shape a range of hand positions. The search picks one (shape,
position) per event minimising the shapes' own costs plus the cost of moving between
them: position shifts, string crossings, cutting a note that still sounds on its string,
and moving a repeated pitch to another string (`tabagent.fingering_search`). Never two
sounding notes on one string: when nothing else fits, the earlier note is cut where the
next one starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.fingering_lead import lead_flags
from tabagent.fingering_search import FEATURES, Context, Layer, Search, feature_weights
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

__all__ = [
    "FEATURES", "FingeringResult", "StreamingFingerer", "assign", "feature_weights", "finger_json",
    "infer_instrument", "lowest_fret",
]

logger = logging.getLogger(__name__)

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
    """Set each event's open_key and lead flags from its surroundings (history gives earlier context)."""
    context = [*history, *events]
    if not context:
        return
    chroma = np.array([event_chroma(e.notes) for e in context])
    flags = open_key_flags([e.onset for e in context], chroma, tuning)
    leads = lead_flags(context, tuning)
    for event, flag, lead in zip(events, flags[len(history) :], leads[len(history) :], strict=True):
        event.open_key = flag
        event.lead = lead


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
    path = Search(tuning, weights).run(events, Context.start(len(tuning.strings)))
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
        self._search = Search(tuning, self.weights)
        self._context = Context.start(len(tuning.strings))
        self._incoming: list[Note] = []       # notes not yet grouped into a closed event
        self._events: list[Event] = []        # closed, uncommitted events
        self._held: list[Note] = []           # committed notes that may still be cut
        self._history: list[Event] = []       # committed events still in the key window
        self._last: list[Note | None] = [None] * len(tuning.strings)
        self._layers: dict[int, tuple[tuple[bool, bool], Layer]] = {}  # id(event) -> (marks, states)

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
        # An event's states change only with its key and lead marks: keep them across pushes.
        layers = []
        for event in self._events:
            key = (event.open_key, event.lead)
            hit = self._layers.get(id(event))
            if hit is None or hit[0] != key:
                hit = (key, Layer(event, self.tuning, self.weights, self._search.priced))
                self._layers[id(event)] = hit
            layers.append(hit[1])
        path = self._search.run(self._events, self._context, layers)
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
        for event in self._events[:count]:
            self._layers.pop(id(event), None)
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
