"""Chord names for notes struck together, as a tab site writes them above the staff.

`name_chord(pitches)` names a set of pitches (three or more pitch classes, or a bare
fifth: a power chord) by the first chord shape that fits all of them, trying the lowest
note as the root first: C, Am, G7, Fmaj7, Dm7, E5, Asus4, Bdim, Caug, C6, Am6, Cadd9, G9,
Bm7b5, Bdim7; a root other than the lowest note adds a slash bass (C/E). Roots are spelt
as guitarists usually spell them (F#, Bb, Eb, ...). `chord_labels` picks the beats of a
part that get a name: where a chord is struck and differs from the last one named.
The exporters name a capo'd part's chords by their shapes (pitches less the capo), as
tab sites do: with a capo on 2, the open C shape is "C".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# MusicXML root-step and root-alter of each spelling above.
STEPS = (("C", 0), ("C", 1), ("D", 0), ("E", -1), ("E", 0), ("F", 0), ("F", 1), ("G", 0), ("A", -1), ("A", 0),
         ("B", -1), ("B", 0))


@dataclass(frozen=True)
class Shape:
    """A chord type: its pitch classes above the root, its suffix and MusicXML kind."""

    intervals: frozenset[int]
    suffix: str
    kind: str                       # MusicXML <kind> value
    gp_type: int                    # Guitar Pro ChordType value
    add: int = 0                    # an added degree (MusicXML <degree>), 0 = none


# Most common first: when two shapes fit the same notes, the earlier one names them.
SHAPES = (
    Shape(frozenset({0, 4, 7}), "", "major", 0),
    Shape(frozenset({0, 3, 7}), "m", "minor", 4),
    Shape(frozenset({0, 7}), "5", "power", 14),
    Shape(frozenset({0, 4, 7, 10}), "7", "dominant", 1),
    Shape(frozenset({0, 4, 10}), "7", "dominant", 1),
    Shape(frozenset({0, 3, 7, 10}), "m7", "minor-seventh", 5),
    Shape(frozenset({0, 3, 10}), "m7", "minor-seventh", 5),
    Shape(frozenset({0, 4, 7, 11}), "maj7", "major-seventh", 2),
    Shape(frozenset({0, 4, 11}), "maj7", "major-seventh", 2),
    Shape(frozenset({0, 5, 7}), "sus4", "suspended-fourth", 9),
    Shape(frozenset({0, 2, 7}), "sus2", "suspended-second", 8),
    Shape(frozenset({0, 2, 4, 7}), "add9", "major", 0, add=9),
    Shape(frozenset({0, 4, 7, 9}), "6", "major-sixth", 3),
    Shape(frozenset({0, 3, 7, 9}), "m6", "minor-sixth", 7),
    Shape(frozenset({0, 2, 4, 7, 10}), "9", "dominant-ninth", 1),
    Shape(frozenset({0, 3, 6}), "dim", "diminished", 12),
    Shape(frozenset({0, 4, 8}), "aug", "augmented", 13),
    Shape(frozenset({0, 3, 6, 10}), "m7b5", "half-diminished", 5),
    Shape(frozenset({0, 3, 6, 9}), "dim7", "diminished-seventh", 12),
    Shape(frozenset({0, 5, 7, 10}), "7sus4", "suspended-fourth", 11),
)


@dataclass(frozen=True)
class Chord:
    """A named chord: root and bass pitch classes (0 = C) and its shape."""

    root: int
    bass: int
    shape: Shape

    @property
    def name(self) -> str:
        slash = f"/{NAMES[self.bass]}" if self.bass != self.root else ""
        return f"{NAMES[self.root]}{self.shape.suffix}{slash}"


def name_chord(pitches: Sequence[int]) -> Chord | None:
    """The chord `pitches` (MIDI numbers struck together) spell, or None.

    Args:
        pitches: at least two notes; two or more distinct pitch classes.

    Returns:
        The first shape (in `SHAPES` order, the lowest note tried as root first) whose
        pitch classes are exactly those played, else None (a dyad other than a fifth,
        a cluster, a scale run struck at once).
    """
    if len(pitches) < 2:
        return None
    bass = min(pitches) % 12
    classes = {p % 12 for p in pitches}
    if len(classes) < 2 or (len(classes) == 2 and {(c - bass) % 12 for c in classes} != {0, 7}):
        return None
    roots = [bass, *sorted(classes - {bass})]
    for shape in SHAPES:
        for root in roots:
            if frozenset((c - root) % 12 for c in classes) == shape.intervals:
                return Chord(root, bass, shape)
    return None


def chord_labels(beats: Sequence[Sequence[int]]) -> list[Chord | None]:
    """Which beats get a chord name: a chord is struck and it is not the last one named.

    Args:
        beats: the pitches starting on each beat of a part, in order (empty for a rest).

    Returns:
        One entry per beat: the chord to write above it, or None.
    """
    out: list[Chord | None] = []
    last = ""
    for pitches in beats:
        chord = name_chord(pitches) if len(pitches) >= 2 else None
        if chord is not None and chord.name != last:
            out.append(chord)
            last = chord.name
        else:
            out.append(None)
    return out
