"""Playing techniques from what the transcriber hears: legato, slides, bends, vibrato, let ring.

`detect(notes, tuning)` marks Note.technique (comma-separated names from
`tabagent.notes.TECHNIQUES`) on the note that is played with the technique:

- hammer_on / pull_off: the note follows the previous one legato (no gap, no new pick
  attack: clearly softer), 1-5 semitones up / down, on the same string when fingered.
- slide: a legato move whose pitch glides (Basic Pitch's pitch bends show the glide at
  the end of the first note or the start of the second), or a legato jump too wide to
  hammer; both notes fretted on the same string.
- bend: the note's pitch bend rises (or falls back) by at least half a semitone and
  stays there; never on an open string.
- vibrato: the pitch bend oscillates around the note.
- let_ring: a note that keeps sounding under at least two later notes (arpeggiated
  chords), on guitar.

Fingered notes (string >= 0) are checked against the fretboard; unfingered notes are
judged on timing and pitch alone, and `tabagent.fingering.assign` then keeps legato
pairs on one string.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from tabagent.notes import Note, sort_notes
from tabagent.tuning import Tuning

logger = logging.getLogger(__name__)

LEGATO_GAP = 0.03         # seconds between one note's end and the next one's start
LEGATO_OVERLAP = 0.06     # or this much overlap (the release tail of the first note)
MAX_LEGATO_DT = 0.5       # onset to onset
SOFTER = 0.92             # a hammered or pulled note is this much softer at most
MAX_HAMMER = 5            # semitones
MAX_SLIDE = 12
BEND_MIN = 0.5            # semitones
VIBRATO_MIN = 0.15        # semitones, standard deviation of the oscillation
_LEGATO = ("hammer_on", "pull_off", "slide")


def detect(notes: Iterable[Note], tuning: Tuning) -> list[Note]:
    """Mark techniques on the notes (in place) and return them in time order.

    Args:
        notes: transcribed notes; pitch_bend (semitones per frame) is used when present.
        tuning: the instrument, used to check fretted notes.

    Returns:
        The same notes, sorted by start, with Note.technique extended.
    """
    ordered = sort_notes(notes)
    for note in ordered:
        _bend_marks(note)
    _legato_marks(ordered, tuning)
    if tuning.instrument != "bass":
        _let_ring_marks(ordered)
    return ordered


def _bend_marks(note: Note) -> None:
    bend = np.asarray(note.pitch_bend, dtype=float)
    if bend.size < 4 or note.fret == 0:
        return
    head = float(np.median(bend[: max(2, bend.size // 5)]))
    body = bend[max(2, bend.size // 5) :]
    # A bend holds its target: take the level reached in the rest of the note.
    reach = float(np.percentile(body, 90)) if head <= np.median(body) else float(np.percentile(body, 10))
    if abs(reach - head) >= BEND_MIN and _sustained(body, reach):
        note.add_technique("bend")
        return
    trend = np.polyval(np.polyfit(np.arange(bend.size), bend, 1), np.arange(bend.size))
    wobble = bend - trend
    crossings = int(np.count_nonzero(np.diff(np.sign(wobble[np.abs(wobble) > 0.02])) != 0))
    if wobble.std() >= VIBRATO_MIN and crossings >= 4:
        note.add_technique("vibrato")


def _sustained(body: np.ndarray, level: float) -> bool:
    """Whether at least a quarter of the note sits within a quarter tone of `level`."""
    return bool(np.mean(np.abs(body - level) <= 0.25) >= 0.25)


def _glide(src: Note, dst: Note) -> bool:
    """Whether pitch bends show a glide from `src` towards `dst`."""
    direction = np.sign(dst.pitch - src.pitch)
    tail = np.asarray(src.pitch_bend[-4:], dtype=float)
    head = np.asarray(dst.pitch_bend[:4], dtype=float)
    leaving = tail.size >= 2 and direction * (tail[-1] - tail[0]) >= 0.4
    arriving = head.size >= 2 and direction * (head[-1] - head[0]) >= 0.4
    return bool(leaving or arriving)


def _legato_marks(notes: Sequence[Note], tuning: Tuning) -> None:
    fingered = all(n.string >= 0 for n in notes)
    for i, dst in enumerate(notes):
        if any(t in dst.techniques for t in _LEGATO):
            continue
        src = _source(notes, i, fingered)
        if src is None:
            continue
        interval = dst.pitch - src.pitch
        glide = _glide(src, dst)
        softer = dst.velocity <= src.velocity * SOFTER
        if fingered and (src.string != dst.string):
            continue
        slide_ok = not fingered or (src.fret > 0 and dst.fret > 0)
        if slide_ok and (glide or (abs(interval) > MAX_HAMMER and softer)) and abs(interval) <= MAX_SLIDE:
            dst.add_technique("slide")
        elif softer and 0 < abs(interval) <= MAX_HAMMER:
            if interval > 0 and (not fingered or dst.fret > 0):
                dst.add_technique("hammer_on")
            elif interval < 0 and (not fingered or src.fret > 0):
                dst.add_technique("pull_off")


def _source(notes: Sequence[Note], i: int, fingered: bool) -> Note | None:
    """The note `notes[i]` continues legato from, if any: the nearest-ending earlier note."""
    dst = notes[i]
    best: Note | None = None
    for j in range(i - 1, -1, -1):
        src = notes[j]
        if dst.start - src.start > MAX_LEGATO_DT:
            break
        if src.start >= dst.start - 1e-6 or src.pitch == dst.pitch:
            continue
        if fingered and src.string != dst.string:
            continue
        if not -LEGATO_OVERLAP <= dst.start - src.end <= LEGATO_GAP:
            continue
        if abs(dst.pitch - src.pitch) > MAX_SLIDE:
            continue
        if best is None or abs(src.end - dst.start) < abs(best.end - dst.start):
            best = src
    if best is None:
        return None
    # Another note struck in between means the line was picked, not slurred.
    between = [n for n in notes if best.start < n.start < dst.start - 1e-6]
    return None if between else best


def _let_ring_marks(notes: Sequence[Note]) -> None:
    for i, note in enumerate(notes):
        if note.end - note.start < 0.4:
            continue
        under = 0
        for later in notes[i + 1 :]:
            if later.start >= note.end - 0.05:
                break
            if later.start > note.start + 0.05 and (note.string < 0 or later.string != note.string):
                under += 1
        if under >= 2:
            note.add_technique("let_ring")
