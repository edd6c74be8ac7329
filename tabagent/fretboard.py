"""Chords on a fretboard: grouping notes into events and the hand shapes that can play them.

The fingering engine (`tabagent.fingering`) searches over the shapes this module lists.
A shape gives every note of an event a string (one note per string) and a fret; it
carries the range of hand positions (the index finger's fret) that can hold it and a
cost that depends on the shape alone: stretch, fingers, muted strings inside a strummed
chord, crossed voices, and a bonus for the standard shapes guitarists learn (open
chords, the CAGED barre shapes, power chords).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from tabagent.notes import Note
from tabagent.tuning import Tuning

logger = logging.getLogger(__name__)

# Notes whose onsets lie this close together (chained) form one event, like a strum.
CHORD_GAP = 0.035
CHORD_SPREAD = 0.1
MAX_SHAPES = 64
# A hand (index finger at fret p) covers frets p..p+3; p+4 and p+5 are stretches.
BOX = 3

# Standard guitar shapes as relative frets on consecutive strings tuned in fourths with
# one major third (E A D G B E intervals); base fret 0 gives the open chord, base b a barre.
_STANDARD_INTERVALS = (5, 5, 5, 4, 5)
_TEMPLATES: tuple[tuple[int, tuple[int, ...]], ...] = (
    # (first string, frets): E-shape family on strings 0-5
    (0, (0, 2, 2, 1, 0, 0)), (0, (0, 2, 2, 0, 0, 0)), (0, (0, 2, 0, 1, 0, 0)),
    (0, (0, 2, 0, 0, 0, 0)), (0, (0, 2, 1, 1, 0, 0)), (0, (0, 2, 2, 1, 3, 0)),
    # A-shape family on strings 1-5
    (1, (0, 2, 2, 2, 0)), (1, (0, 2, 2, 1, 0)), (1, (0, 2, 0, 2, 0)),
    (1, (0, 2, 0, 1, 0)), (1, (0, 2, 1, 2, 0)), (1, (0, 2, 2, 0, 0)),
    # C shape, G shape and D shape
    (1, (3, 2, 0, 1, 0)), (0, (3, 2, 0, 0, 0, 3)), (0, (3, 2, 0, 0, 3, 3)),
    (2, (0, 2, 3, 2)), (2, (0, 2, 3, 1)), (2, (0, 2, 1, 2)), (2, (3, 2, 1, 1)),
    # power chords (root, fifth, octave) with the root on strings 0, 1 and 2
    (0, (0, 2, 2)), (1, (0, 2, 2)), (2, (0, 2, 3)),
)


@dataclass(frozen=True)
class Weights:
    """Costs of the fingering search; one set per instrument.

    Static costs belong to a shape held at a position; transition costs to moving from
    one event's shape to the next.
    """

    height: float = 0.01          # per fret of hand position above the first, per chord
    line_height: float = 0.01     # the same for a single note
    open_low: float = -0.1        # an open string while the hand is in first position
    open_position: int = 1        # highest hand position where open strings are natural
    open_mid: float = 0.1         # an open string just above it
    open_high: float = 0.1        # and per fret of hand position further up
    stretch: float = 0.9          # span of 4 frets (5 with the index)
    big_stretch: float = 2.5      # span of 5 frets
    skip: float = 1.0             # a muted string inside a strummed chord
    inversion: float = 3.0        # a higher note on a lower string
    four_fingers: float = 0.15
    template: float = -0.7        # a standard chord shape
    dyad: float = 0.0             # a power-chord or octave pair on neighbouring strings
    shift: float = 1.3            # any position change
    shift_per_fret: float = 0.22
    along_shift: float = 0.65     # the same for a single-note line moving along its string
    along_shift_per_fret: float = 0.11
    ring_block: float = 30.0      # cutting a note still sounding on the string
    repeat_string: float = 0.6    # the same pitch on another string than last time
    repeat_window: float = 8.0
    crossing: float = 0.15        # per string of movement between events
    line_crossing: float = 0.15   # the same between two single notes
    parallel: float = -2.5        # the previous chord's shape moved along the same strings
    legato_string: float = 4.0    # hammer-on/pull-off/slide off the previous note's string
    bend_open: float = 6.0        # a bend on an open string
    open_off_key: float = 0.2     # an open string in first position in a key not played there
    string_height: float = 0.0    # per fourth of the note's open string above the free low strings
    low_strings: int = 0          # semitones above the lowest open string that cost nothing
    high_fret: float = 0.0        # per fret above `high_from`, per fretted note
    high_from: int = 7
    pinch_skip: float = 0.15      # per string skipped by a pinch (two notes, or a wide interval)
    pinch_interval: int = 99      # an interval from which strings skipped in a chord cost little
    held_skip: float = 0.0        # per string skipped inside a standard chord shape (0: as any skip)
    reach: float = 0.0            # a single note one fret above the box, under the pinky (0: never)
    reach_near_nut: float = 0.0   # the same for a hand below `reach_low_below` (capo counted)
    reach_low_below: int = 5
    lead_low: float = 0.0         # per fret the hand sits below `lead_from`, in a lead line
    lead_from: int = 6
    lead_open_up: float = 1.0     # share of open_mid and open_high a lead line pays


# Fitted on the dev songs of bench/human_tabs.py, kept where the synthetic pieces and the
# streaming search agree: power-chord and octave pairs held as one shape, long shifts
# dearer than short ones, muted strings inside a strum avoided. Then, as structure rather
# than fitting (each kept only where it helped both the dev and the held-out songs, at a
# round value): the pinky's reach one fret past the box, pinches and held chord shapes
# that skip strings as fingerpicking does, and a small cost for frets above the 12th.
GUITAR = Weights(
    dyad=-1.0,
    reach=0.3,
    pinch_interval=8,
    held_skip=0.3,
    shift_per_fret=0.4,
    along_shift_per_fret=0.2,
    skip=2.0,
    pinch_skip=0.3,
    reach_near_nut=0.45,
    high_fret=0.05,
    high_from=12,
    lead_low=0.06,
    lead_open_up=0.0,
)
BASS = Weights(
    # Fitted on the dev songs of bench/human_tabs.py. Bass players keep a line on the low
    # strings (E and A; a 5-string's B and E) and on one string rather than crossing, slide
    # the hand freely along the neck (a shift costs only its distance), and use open
    # strings in any key while the hand is low.
    height=0.1,
    line_height=0.0,
    shift=0.0,
    along_shift=0.0,
    along_shift_per_fret=0.22,
    stretch=1.2,
    big_stretch=3.0,
    template=0.0,
    open_low=-0.025,
    open_position=3,
    open_mid=-0.1,
    open_high=0.0,
    open_off_key=-0.025,
    line_crossing=0.3,
    string_height=0.1,
    low_strings=5,
    high_fret=0.04,
    high_from=6,
)


def weights_for(tuning: Tuning) -> Weights:
    """The default weights for the tuning's instrument."""
    return BASS if tuning.instrument == "bass" else GUITAR


@dataclass(frozen=True)
class Shape:
    """One way to play an event: a string and fret per kept note, and where the hand can be."""

    strings: tuple[int, ...]
    frets: tuple[int, ...]
    p_lo: int
    p_hi: int
    cost: float
    n_open: int
    features: tuple[float, ...] = ()  # SHAPE_FEATURES (empty for a shape no hand can hold)


@dataclass
class Event:
    """Notes starting together (a chord or a single note) and the shapes that play them."""

    notes: list[Note]
    onset: float
    shapes: list[Shape] = field(default_factory=list)
    dropped: list[Note] = field(default_factory=list)
    open_key: bool = True
    lead: bool = False  # a single note of a lead line (`tabagent.fingering_lead`)


def group_events(notes: Sequence[Note]) -> list[list[Note]]:
    """Group time-ordered notes into events of notes struck together.

    A note joins the current event when its onset is within CHORD_GAP of the previous
    onset and CHORD_SPREAD of the first, no note of the event has ended yet, and its pitch
    is not already in the event.

    Args:
        notes: notes sorted by start time.

    Returns:
        The events, each a list of notes in ascending pitch.
    """
    events: list[list[Note]] = []
    current: list[Note] = []
    for note in notes:
        if current and (
            note.start - current[-1].start <= CHORD_GAP
            and note.start - current[0].start <= CHORD_SPREAD
            and all(n.end > note.start and n.pitch != note.pitch for n in current)
        ):
            current.append(note)
            continue
        if current:
            events.append(sorted(current, key=lambda n: n.pitch))
        current = [note]
    if current:
        events.append(sorted(current, key=lambda n: n.pitch))
    return events


def _template_frets(tuning: Tuning) -> list[dict[int, int]]:
    """The standard shapes that fit this tuning, as {string: relative fret}."""
    strings = tuning.strings
    intervals = tuple(b - a for a, b in itertools.pairwise(strings))
    out = []
    for first, frets in _TEMPLATES:
        need = _STANDARD_INTERVALS[first : first + len(frets) - 1]
        for offset in range(len(strings) - len(frets) + 1):
            # The template's string `first` sits on instrument string `offset`.
            if intervals[offset : offset + len(frets) - 1] == need:
                out.append({offset + i: f for i, f in enumerate(frets)})
    return out


def _matches_template(strings: Sequence[int], frets: Sequence[int], templates: list[dict[int, int]]) -> bool:
    if len(strings) < 2:
        return False
    for template in templates:
        if not all(s in template for s in strings):
            continue
        if len(strings) < min(3, len(template)):
            continue
        base = frets[0] - template[strings[0]]
        if base >= 0 and all(f - template[s] == base for s, f in zip(strings, frets, strict=True)):
            return True
    return False


def _power_dyad(pitches: Sequence[int], strings: Sequence[int], frets: Sequence[int]) -> bool:
    """A fifth, fourth or octave held as one compact shape, as in power-chord riffs."""
    (low, high) = sorted(range(2), key=lambda i: pitches[i])
    interval = pitches[high] - pitches[low]
    apart = strings[high] - strings[low]
    if interval not in (5, 7, 12) or not 0 < apart <= (2 if interval == 12 else 1):
        return False
    return 0 <= frets[high] - frets[low] <= 2


def _fingers(fretted: list[int]) -> int:
    """Fingers needed: the index may barre the lowest fret; three or more on one fret barre."""
    if not fretted:
        return 0
    lo = min(fretted)
    count = 0
    for fret in set(fretted):
        n = fretted.count(fret)
        count += 1 if fret == lo or n >= 3 else n
    return count


# The shape features the weights of the same name price (see `shape_weights`).
SHAPE_FEATURES = (
    "four_fingers", "stretch", "big_stretch", "skip", "pinch_skip", "held_skip", "inversion",
    "template", "dyad", "bend_open", "string_height", "high_fret",
)


def shape_weights(weights: Weights) -> np.ndarray:
    """The weights of `SHAPE_FEATURES`, in order."""
    return np.array([float(getattr(weights, name)) for name in SHAPE_FEATURES])


def _shape_features(
    tuning: Tuning,
    pitches: Sequence[int],
    strings: Sequence[int],
    frets: Sequence[int],
    weights: Weights,
    templates: list[dict[int, int]],
    bends: Sequence[bool],
) -> tuple[np.ndarray, int, int] | None:
    """The features (`SHAPE_FEATURES`) and hand range of one assignment, or None when no hand can hold it."""
    f = dict.fromkeys(SHAPE_FEATURES, 0.0)
    fretted = [fr for fr in frets if fr > 0]
    if fretted:
        lo, hi = min(fretted), max(fretted)
        span = hi - lo
        if span > BOX + 2:
            return None
        fingers = _fingers(fretted)
        if fingers > 4:
            return None
        f["four_fingers"] = float(fingers == 4)
        if span == BOX + 1:
            f["stretch"] = 1.5 if lo < 5 else 1.0
        elif span == BOX + 2:
            if lo < 5:
                return None
            f["big_stretch"] = 1.0
        p_lo, p_hi = max(1, hi - BOX) if span <= BOX else lo, lo
    else:
        p_lo, p_hi = 0, 0  # any position
    if len(strings) > 1:
        template = bool(weights.template) and _matches_template(strings, frets, templates)
        _skip_features(pitches, strings, template, weights, f)
        for (pa, sa), (pb, sb) in itertools.combinations(zip(pitches, strings, strict=True), 2):
            if (pa - pb) * (sa - sb) < 0:
                f["inversion"] += 1.0
        f["template"] = float(template)
        f["dyad"] = float(len(strings) == 2 and _power_dyad(pitches, strings, frets))
    f["bend_open"] = float(sum(1 for fr, b in zip(frets, bends, strict=True) if b and fr == 0))
    free = min(tuning.strings) + weights.low_strings
    f["string_height"] = sum(max(0, tuning.strings[s] - free) / 5 for s in strings)
    f["high_fret"] = float(sum(max(0, fr - weights.high_from) for fr in frets))
    return np.array([f[name] for name in SHAPE_FEATURES]), p_lo, p_hi


def _skip_features(pitches: Sequence[int], strings: Sequence[int], template: bool, weights: Weights,
                   f: dict[str, float]) -> None:
    """Count the strings left out between a chord's notes, by how hard the gap is.

    Muted strings inside a strum are hard (`skip`); a pinch skips them freely
    (`pinch_skip`): two notes, or a wide interval (a bass note and the treble over it, as
    in fingerpicking). Strings picked out of a standard chord shape the hand holds are
    skipped freely too (`held_skip`, where the weights price it apart).
    """
    strum = len(strings) >= 3
    by_string = sorted(zip(strings, pitches, strict=True))
    for (sa, pa), (sb, pb) in itertools.pairwise(by_string):
        if sb - sa < 2:
            continue
        if template and weights.held_skip:
            name = "held_skip"
        elif strum and pb - pa < weights.pinch_interval:
            name = "skip"
        else:
            name = "pinch_skip"
        f[name] += sb - sa - 1


def _assignments(positions: list[list[tuple[int, int]]], max_span: int | None):
    """Every choice of one position per note with distinct strings (and bounded fret span)."""
    chosen: list[tuple[int, int]] = []
    used: set[int] = set()

    def walk(i: int, lo: int, hi: int):
        if i == len(positions):
            yield tuple(chosen)
            return
        for s, f in positions[i]:
            if s in used:
                continue
            nlo, nhi = (min(lo, f), max(hi, f)) if f > 0 else (lo, hi)
            if max_span is not None and f > 0 and nhi - nlo > max_span:
                continue
            used.add(s)
            chosen.append((s, f))
            yield from walk(i + 1, nlo, nhi)
            chosen.pop()
            used.discard(s)

    yield from walk(0, 10**6, -1)


@lru_cache(maxsize=4096)
def _shapes_for(
    pitches: tuple[int, ...], bends: tuple[bool, ...], tuning: Tuning, weights: Weights
) -> tuple[Shape, ...]:
    positions = [tuning.positions(p) for p in pitches]
    templates = _template_frets(tuning)
    priced = shape_weights(weights)
    shapes: list[Shape] = []
    for relaxed in (False, True):
        for assignment in _assignments(positions, None if relaxed else BOX + 2):
            strings = tuple(s for s, _ in assignment)
            frets = tuple(f for _, f in assignment)
            n_open = sum(1 for f in frets if f == 0)
            scored = _shape_features(tuning, pitches, strings, frets, weights, templates, bends)
            if scored is None:
                if not relaxed:
                    continue
                # No hand can hold it as written: keep it, at a price, rather than fail.
                fretted = [f for f in frets if f > 0]
                lo = min(fretted)
                shapes.append(Shape(strings, frets, lo, lo, 20.0 + 3.0 * (max(fretted) - lo), n_open))
            else:
                features, p_lo, p_hi = scored
                cost = float(features @ priced)
                shapes.append(Shape(strings, frets, p_lo, p_hi, cost, n_open, tuple(features)))
            if len(shapes) > 20 * MAX_SHAPES:
                break
        if shapes:
            break
    # Keep the cheapest, counting the height of the lowest hand position each allows.
    shapes.sort(key=lambda s: s.cost + weights.height * max(s.p_lo - 1, 0))
    return tuple(shapes[:MAX_SHAPES])


def build_event(notes: list[Note], tuning: Tuning, weights: Weights) -> Event:
    """Shapes for one event; drops (and reports) notes when no string set can hold them all.

    Args:
        notes: the event's notes, every one playable on some string.
        tuning: the instrument.
        weights: the cost weights.

    Returns:
        The Event with its shapes (never empty unless no note is left).
    """
    kept = sorted(notes, key=lambda n: n.pitch)
    dropped: list[Note] = []
    # More notes than strings can never fit: let the quietest go first.
    while len(kept) > len(tuning.strings):
        victim = min(kept, key=lambda n: (n.velocity, n.end - n.start))
        kept.remove(victim)
        dropped.append(victim)
    while kept:
        pitches = tuple(n.pitch for n in kept)
        bends = tuple(_has_bend(n) for n in kept)
        shapes = _shapes_for(pitches, bends, tuning, weights)
        if shapes:
            return Event(kept, min(n.start for n in notes), list(shapes), dropped)
        victim = min(kept, key=lambda n: (n.velocity, n.end - n.start))
        kept.remove(victim)
        dropped.append(victim)
    if dropped:
        logger.debug("event at %.3f s: %d notes cannot share the strings", notes[0].start, len(dropped))
    return Event([], min(n.start for n in notes), [], dropped)


# Krumhansl-Kessler key profiles, tonic first.
_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
KEY_BEFORE, KEY_AFTER = 12.0, 4.0  # seconds of context for the local key


def open_keys(tuning: Tuning) -> tuple[frozenset[int], frozenset[int]]:
    """Tonic pitch classes (major, minor) of the keys played in first position with open strings.

    In standard tuning: C, D, E, G, A (and B) major and E, A, D minor; the sets move with
    the tuning and the capo.
    """
    pcs = [p % 12 for p in tuning.sounding]
    major = set(pcs) | {(pcs[min(1, len(pcs) - 1)] + 3) % 12}
    minor = set(pcs[:3])
    return frozenset(major), frozenset(minor)


def key_profiles() -> np.ndarray:
    """(24, 12) key profiles: 12 major keys then 12 minor keys, zero-mean, unit norm."""
    rows = []
    for profile in (_MAJOR, _MINOR):
        base = np.array(profile) - np.mean(profile)
        for tonic in range(12):
            rows.append(np.roll(base, tonic))
    out = np.array(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def open_key_flags(onsets: Sequence[float], chroma: np.ndarray, tuning: Tuning) -> list[bool]:
    """Per event, whether the local key is one played in open position.

    Args:
        onsets: event onsets in seconds, ascending.
        chroma: (events, 12) duration-weighted pitch classes of each event.
        tuning: the instrument.

    Returns:
        One flag per event (True when there is too little context to tell).
    """
    if len(onsets) == 0:
        return []
    major, minor = open_keys(tuning)
    profiles = key_profiles()
    cum = np.vstack([np.zeros(12), np.cumsum(chroma, axis=0)])
    times = np.asarray(onsets)
    lo = np.searchsorted(times, times - KEY_BEFORE, side="left")
    hi = np.searchsorted(times, times + KEY_AFTER, side="right")
    flags = []
    for a, b in zip(lo, hi, strict=True):
        hist = cum[b] - cum[a]
        if hist.sum() <= 0 or np.count_nonzero(hist) < 3:
            flags.append(True)
            continue
        k = int(np.argmax(profiles @ (hist - hist.mean())))
        flags.append(k % 12 in (major if k < 12 else minor))
    return flags


def event_chroma(notes: Sequence[Note]) -> np.ndarray:
    """Pitch classes of an event, weighted by duration (capped at 2 s)."""
    out = np.zeros(12)
    for note in notes:
        out[note.pitch % 12] += min(max(note.end - note.start, 0.05), 2.0)
    return out


def _has_bend(note: Note) -> bool:
    return "bend" in note.techniques
