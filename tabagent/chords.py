"""Chord names from the notes that sound together, bar by bar ("Am", "G/B", "E5", "Cmaj7").

Each window (a bar, or half a bar when its halves differ) weighs every pitch class by how
long it sounds there (and how loud); the chord template (root + quality) that explains most of that weight, with the
fewest missing tones, names the window. The lowest sounding note makes a slash chord when
it is a chord tone other than the root. Windows with fewer than two pitch classes (a
melody note, silence) get no name, and equal neighbours merge into one mark.

The player, the video and tab.pdf show these names; `name_chord` is the one place a set
of pitches becomes a name.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tabagent.notes import Note

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# (suffix, intervals above the root), commonest first: on equal scores the earlier wins.
QUALITIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("", (0, 4, 7)),
    ("m", (0, 3, 7)),
    ("5", (0, 7)),
    ("7", (0, 4, 7, 10)),
    ("m7", (0, 3, 7, 10)),
    ("maj7", (0, 4, 7, 11)),
    ("sus4", (0, 5, 7)),
    ("sus2", (0, 2, 7)),
    ("6", (0, 4, 7, 9)),
    ("m6", (0, 3, 7, 9)),
    ("add9", (0, 2, 4, 7)),
    ("dim", (0, 3, 6)),
    ("aug", (0, 4, 8)),
    ("m7b5", (0, 3, 6, 10)),
    ("dim7", (0, 3, 6, 9)),
)
MIN_SHARE = 0.75    # the chord's tones must carry this share of the window's weight
MIN_TONE = 0.12     # a pitch class below this share of the strongest is ignored (passing notes)


@dataclass(frozen=True)
class ChordMark:
    """A chord name over [start, end) seconds."""

    start: float
    end: float
    name: str


def name_chord(weights: dict[int, float], bass: int | None = None) -> str | None:
    """The name of the chord these pitch classes make, or None when they make none.

    Args:
        weights: pitch class (0 = C) -> weight (seconds sounding, or a count).
        bass: the lowest sounding pitch (MIDI), for slash chords.

    Returns:
        e.g. "Am", "G/B", "E5", "D7"; None for fewer than two pitch classes or no fit.
    """
    top = max(weights.values(), default=0.0)
    if top <= 0:
        return None
    pcs = {pc % 12: w for pc, w in weights.items() if w >= MIN_TONE * top}
    if len(pcs) < 2:
        return None
    total = sum(pcs.values())
    best: tuple[float, str, int] | None = None
    for root in range(12):
        if root not in pcs:
            continue
        for suffix, intervals in QUALITIES:
            tones = {(root + i) % 12 for i in intervals}
            covered = sum(w for pc, w in pcs.items() if pc in tones)
            if covered < MIN_SHARE * total:
                continue
            missing = sum(1 for t in tones if t not in pcs)
            if suffix != "5" and missing > 1:
                continue
            if suffix == "5" and len(pcs) > 2:
                continue  # a power chord only when nothing else sounds
            # Explained weight first, then fewer missing tones, then a stronger root.
            score = covered / total - 0.15 * missing + 0.05 * pcs[root] / top
            if best is None or score > best[0] + 1e-9:
                best = (score, suffix, root)
    if best is None:
        return None
    _, suffix, root = best
    name = NAMES[root] + suffix
    if bass is not None and bass % 12 != root:
        intervals = dict(QUALITIES)[suffix]
        if (bass - root) % 12 in intervals:
            name += "/" + NAMES[bass % 12]
    return name


def chord_marks(notes: Iterable[Note], beats: Sequence[float], downbeats: Sequence[float] = (),
                end: float | None = None) -> list[ChordMark]:
    """Chord names over notes of any parts, a bar (or half a bar) at a time.

    A bar whose notes make one chord gets that name; a bar whose halves make two different
    chords gets both; without downbeats every beat is a window. Equal neighbours merge.

    Args:
        notes: the notes of every part that should shape the harmony (bass included:
            its lowest note makes slash chords).
        beats: beat times in seconds; without beats, nothing is named.
        downbeats: bar starts in seconds (a subset of `beats`).
        end: the end of the last window (default: one beat after the last beat).

    Returns:
        Marks in time order.
    """
    if len(beats) < 2:
        return []
    last = end if end is not None and end > beats[-1] else beats[-1] + (beats[-1] - beats[-2])
    edges = list(beats) + [last]
    ordered = sorted(notes, key=lambda n: n.start)
    windows: list[tuple[float, float, str | None]] = []
    bars = [d for d in downbeats if beats[0] - 1e-6 <= d <= beats[-1] + 1e-6]
    if len(bars) >= 2:
        starts = [edges[0]] if edges[0] < bars[0] - 1e-6 else []
        bounds = starts + bars + [last]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if b <= a:
                continue
            whole = _window(ordered, a, b)
            inner = [e for e in edges if a + 1e-6 < e < b - 1e-6]
            mid = inner[(len(inner) - 1) // 2] if inner else None
            if mid is not None:
                first, second = _window(ordered, a, mid), _window(ordered, mid, b)
                if first != second and first is not None and second is not None:
                    windows += [(a, mid, first), (mid, b, second)]
                    continue
            windows.append((a, b, whole))
    else:
        windows = [(a, b, _window(ordered, a, b)) for a, b in zip(edges, edges[1:], strict=False) if b > a]
    marks: list[ChordMark] = []
    for a, b, name in windows:
        if name is None:
            continue
        if marks and marks[-1].name == name and abs(marks[-1].end - a) < 1e-6:
            marks[-1] = ChordMark(marks[-1].start, b, name)
        else:
            marks.append(ChordMark(a, b, name))
    return marks


def _window(ordered: Sequence[Note], a: float, b: float) -> str | None:
    """The chord of the notes sounding in [a, b): each pitch class weighed by its time there."""
    weights: dict[int, float] = {}
    bass: int | None = None
    lo = bisect.bisect_left([n.start for n in ordered], a - 8.0)  # notes over 8 s are not expected
    for n in ordered[lo:]:
        if n.start >= b:
            break
        overlap = min(n.end, b) - max(n.start, a)
        if overlap <= 0:
            continue
        weights[n.pitch % 12] = weights.get(n.pitch % 12, 0.0) + overlap * (0.5 + n.velocity)
        if n.start >= a - 0.05:  # the bass of the window is a note struck in it
            bass = n.pitch if bass is None else min(bass, n.pitch)
    return name_chord(weights, bass)


def at(marks: Sequence[ChordMark], t: float) -> str:
    """The chord sounding at time `t` ("" when none)."""
    for m in marks:
        if m.start <= t < m.end:
            return m.name
    return ""
