"""Playing techniques from what the transcriber hears: bends, vibrato, legato, slides, let ring.

The cues are Basic Pitch's per-frame pitch bends (`Note.pitch_bend`, semitones, one
value per 11.6 ms frame, measured around the note's own pitch) and, when the transcriber
measured it, each note's attack (`Note.attack`: how much the sound's energy jumps at the
onset; a pick re-excites the string, a fretting finger much less, a bend or slide not at
all). Measured on renders with known techniques (`bench/technique_accuracy.py`,
docs/ACCURACY.md), Basic Pitch hears:

- a bend of a half step or more as two notes: the picked pitch, its bends rising at its
  end, and a legato note at the target whose bends rise into it from below, the glide
  lasting 6-9 frames in all; a quarter-step bend stays one note whose bends settle a
  third to two thirds of a semitone up. `merge_bends` makes the pair one bent note.
- a slide as two legato notes with a shorter glide (2-4 frames) and no new attack.
- a hammer-on or pull-off as two legato notes with no glide (at most one frame shows the
  new pitch early), whose attack is weaker than a pick's.
- vibrato as bends that swing around the note at least twice.

`detect(notes, tuning)` marks a finished list (the notes `tabagent.notes.TECHNIQUES`
names, comma-separated in Note.technique) and returns it with bends merged.
`TechniqueStream` does the same on a stream (the transcriber, before fingering, so the
fingering keeps legato pairs on one string), and `verify` then drops the marks the
fingering made impossible: legato between two strings, an open-string bend.

Bend sizes are quantised to guitarists' steps (`BEND_STEPS`: 1/4, 1/2, full and 1 1/2
steps = 0.5, 1, 2 and 3 semitones); `bend_amount` reads a bent note's size back from its
curve (the exporters and result.json use it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from tabagent.fretboard import Weights, weights_for
from tabagent.notes import Note, sort_notes
from tabagent.tuning import Tuning

logger = logging.getLogger(__name__)

BEND_STEPS = {0.5: "1/4", 1.0: "1/2", 2.0: "full", 3.0: "1 1/2"}   # semitones -> steps
_LEGATO = ("hammer_on", "pull_off", "slide")


@dataclass(frozen=True)
class Settings:
    """Thresholds of the detector; the defaults were chosen on the dev renders only
    (bench/technique_accuracy.py reports dev and held-out side by side).

    Attributes:
        legato_gap: most seconds between one note's end and the next one's start.
        legato_overlap: most seconds of overlap (the first note's release tail).
        max_legato_dt: most seconds from one onset to the next for a legato pair.
        glide_level: semitones a frame must lean towards the other note to count as glide.
        slide_glide: fewest glide frames (both notes together) of a slide.
        bend_glide: fewest glide frames of a bend heard as two notes.
        max_bend: widest bend heard as two notes, semitones.
        glide_attack: most attack (energy jump) of a slide's or bend's second note.
        legato_attack: most attack of a hammer-on's or pull-off's second note.
        softer: with no attack measured: a hammered note is this much softer at most.
        max_hammer: widest hammer-on or pull-off, semitones.
        max_slide: widest slide, semitones.
        bend_level: semitones a single note's bends must settle above its start.
        vibrato_depth: standard deviation of the bends around their trend, semitones.
        vibrato_swings: fewest zero crossings of that wobble.
        ring_length: shortest let-ring note, seconds.
        ring_under: notes that must start under it.
        ring_margin: they start at least this long before it ends, seconds.
    """

    legato_gap: float = 0.05
    legato_overlap: float = 0.08
    max_legato_dt: float = 1.0
    glide_level: float = 0.3
    slide_glide: int = 1
    bend_glide: int = 5
    max_bend: int = 3
    glide_attack: float = 1.35
    legato_attack: float = 1.75
    softer: float = 0.92
    max_hammer: int = 5
    max_slide: int = 12
    bend_level: float = 0.3
    vibrato_depth: float = 0.15
    vibrato_swings: int = 4
    ring_length: float = 0.4
    ring_under: int = 1
    ring_margin: float = 0.25


DEFAULT = Settings()
# The fingering's cost of a legato pair across two strings (tabagent.fretboard's
# `legato_string`), as the transcriber uses it once it marks legato itself: chosen with
# the thresholds above on the dev renders (4 kept a third of the marked hammer-ons on two
# strings, where `verify` then drops them; 10 raised hammer-on recall from 0.35 to 0.65).
LEGATO_STRING = 10.0


def fingering_weights(tuning: Tuning) -> Weights:
    """The fingering weights of `tuning`'s instrument with legato pairs held to one string."""
    return replace(weights_for(tuning), legato_string=max(weights_for(tuning).legato_string, LEGATO_STRING))


def bend_amount(note: Note) -> float:
    """A bent note's size in semitones, quantised to `BEND_STEPS` (0 when not bent)."""
    if "bend" not in note.techniques:
        return 0.0
    span = (max(note.pitch_bend) - min(note.pitch_bend)) if note.pitch_bend else 2.0
    return min(BEND_STEPS, key=lambda s: abs(s - span))


def bend_name(amount: float) -> str:
    """Steps as a guitarist says them: 0.5 -> "1/4", 2 -> "full"."""
    return BEND_STEPS.get(amount, f"{amount:g}")


def detect(notes: Iterable[Note], tuning: Tuning, settings: Settings = DEFAULT) -> list[Note]:
    """Mark techniques on finished notes and return them in time order, bends merged.

    Args:
        notes: transcribed notes (fingered or not); pitch_bend and attack are used when present.
        tuning: the instrument (let ring is for guitars; fingered notes are checked).
        settings: thresholds.

    Returns:
        The notes, sorted by start; a bend heard as two notes is one note now.
    """
    ordered = merge_bends(sort_notes(notes), settings)
    for note in ordered:
        _bend_or_vibrato(note, settings)
    for i in range(len(ordered)):
        _legato_mark(ordered, i, settings)
    if tuning.instrument != "bass":
        for i in range(len(ordered)):
            _let_ring_mark(ordered, i, settings)
    if all(n.string >= 0 for n in ordered):
        verify(ordered)
    return ordered


# -- the pitch-bend curve ----------------------------------------------------------------
def _bends(note: Note) -> np.ndarray:
    return np.asarray(note.pitch_bend, dtype=float)


def _glide_frames(src: Note, dst: Note, settings: Settings) -> int:
    """Frames at the end of `src` leaning towards `dst` and at the start of `dst` still
    leaning back towards `src`: how long the pitch took to move from one to the other.

    Only frames part of the way count: a hammer-on's step shows the whole interval in
    the frame or two where the notes meet, and is no glide.
    """
    direction = float(np.sign(dst.pitch - src.pitch))
    full = abs(dst.pitch - src.pitch) - 0.25
    tail, head = _bends(src), _bends(dst)
    frames = 0
    if tail.size:
        tail = (tail - np.median(tail[: max(1, tail.size // 2)])) * direction
        for value in tail[::-1]:
            if value < settings.glide_level:
                break
            frames += value < full
    if head.size:
        head = (head - np.median(head[head.size // 2 :])) * -direction
        for value in head:
            if value < settings.glide_level:
                break
            frames += value < full
    return int(frames)


def merge_bends(notes: list[Note], settings: Settings = DEFAULT, frozen: frozenset[int] = frozenset()) -> list[Note]:
    """Join a picked note and the legato note its long upward glide reaches into one bent note.

    Args:
        notes: notes in start order (unchanged when there is nothing to merge).
        settings: thresholds.
        frozen: ids of notes already handed on (a stream's context): never changed.

    Returns:
        The notes without the bend targets; the bent note spans both, marked "bend", its
        pitch_bend the joined curve (semitones above its own pitch, starting near 0).
    """
    out: list[Note] = []
    gone: set[int] = set()
    for i, src in enumerate(notes):
        if id(src) in gone:
            continue
        dst = None if id(src) in frozen else _bend_target(notes, i, settings, frozen)
        if dst is not None:
            gone.add(id(dst))
            _join(src, dst)
        out.append(src)
    return out


def _bend_target(notes: Sequence[Note], i: int, settings: Settings, frozen: frozenset[int]) -> Note | None:
    src = notes[i]
    if src.fret == 0:
        return None
    for dst in notes[i + 1 :]:
        if dst.start - src.start > settings.max_legato_dt:
            return None
        if id(dst) in frozen or not 0 < dst.pitch - src.pitch <= settings.max_bend:
            continue
        if not _legato_gap(src, dst, settings):
            continue
        if _struck_between(notes, src, dst):
            return None
        if not _glide_attack(src, dst, settings):
            continue
        if _glide_frames(src, dst, settings) >= settings.bend_glide:
            return dst
    return None


def _join(src: Note, dst: Note) -> None:
    head = _bends(src)
    base = float(np.median(head[: max(1, head.size // 2)])) if head.size else 0.0
    rise = dst.pitch - src.pitch
    curve = [float(b) - base for b in head] + [float(b) - base + rise for b in _bends(dst)]
    # Basic Pitch's bends come in thirds of a semitone with single-frame slips: a running
    # median keeps the shape and the size without them.
    src.pitch_bend = _median3(curve)
    src.end = max(src.end, dst.end)
    src.velocity = max(src.velocity, dst.velocity)
    src.add_technique("bend")


def _median3(values: Sequence[float]) -> list[float]:
    if len(values) < 3:
        return [round(float(v), 3) for v in values]
    arr = np.asarray(values, dtype=float)
    padded = np.concatenate([arr[:1], arr, arr[-1:]])
    smooth = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return [round(float(v), 3) for v in smooth]


def _bend_or_vibrato(note: Note, settings: Settings) -> None:
    """A single note's own bends: a bend that settles higher (quarter steps), or vibrato."""
    if "bend" in note.techniques or note.fret == 0:
        return
    bend = _bends(note)
    if bend.size < 8:
        return
    smooth = np.asarray(_median3([float(b) for b in bend]), dtype=float)
    head = float(np.median(smooth[: max(2, smooth.size // 5)]))
    # A bend holds its new pitch (vibrato swings around the old one): the last half sits up.
    held = float(np.median(smooth[smooth.size // 2 :]))
    if held - head >= settings.bend_level:
        note.pitch_bend = [round(float(b) - head, 3) for b in smooth]
        note.add_technique("bend")
        return
    trend = np.polyval(np.polyfit(np.arange(bend.size), bend, 1), np.arange(bend.size))
    wobble = bend - trend
    crossings = int(np.count_nonzero(np.diff(np.sign(wobble[np.abs(wobble) > 0.02])) != 0))
    if wobble.std() >= settings.vibrato_depth and crossings >= settings.vibrato_swings:
        note.add_technique("vibrato")


# -- legato: hammer-ons, pull-offs, slides -------------------------------------------------
def _legato_gap(src: Note, dst: Note, settings: Settings) -> bool:
    return -settings.legato_overlap <= dst.start - src.end <= settings.legato_gap and src.start < dst.start - 1e-6


def _attack(src: Note, dst: Note, settings: Settings) -> float:
    """`dst`'s attack; without a measured one, its loudness against `src` (1 = as loud)
    scaled so that `softer` lands on `legato_attack`."""
    if dst.attack > 0:
        return dst.attack
    ratio = dst.velocity / max(src.velocity, 1e-6)
    return ratio / settings.softer * settings.legato_attack


def _glide_attack(src: Note, dst: Note, settings: Settings) -> bool:
    """Whether `dst` starts without a new attack, as a bend's or slide's second note does
    (with no attack measured, as a legato note does)."""
    if dst.attack > 0:
        return dst.attack < settings.glide_attack
    return _attack(src, dst, settings) < settings.legato_attack


def _struck_between(notes: Sequence[Note], src: Note, dst: Note) -> bool:
    """Whether another note starts between the two: then the line was picked, not slurred."""
    return any(src.start + 1e-6 < n.start < dst.start - 1e-6 for n in notes if n is not src and n is not dst)


def _source(notes: Sequence[Note], i: int, settings: Settings) -> Note | None:
    """The note `notes[i]` continues legato from, if any: the nearest-ending earlier note."""
    dst = notes[i]
    fingered = dst.string >= 0
    best: Note | None = None
    for j in range(i - 1, -1, -1):
        src = notes[j]
        if dst.start - src.start > settings.max_legato_dt:
            break
        if src.pitch == dst.pitch or not _legato_gap(src, dst, settings):
            continue
        if fingered and src.string != dst.string:
            continue
        if abs(dst.pitch - src.pitch) > settings.max_slide:
            continue
        if best is None or abs(src.end - dst.start) < abs(best.end - dst.start):
            best = src
    if best is None or _struck_between(notes, best, dst):
        return None
    return best


def _legato_mark(notes: Sequence[Note], i: int, settings: Settings) -> None:
    dst = notes[i]
    if any(t in dst.techniques for t in _LEGATO):
        return
    src = _source(notes, i, settings)
    if src is None:
        return
    interval = dst.pitch - src.pitch
    attack = _attack(src, dst, settings)
    glide = _glide_frames(src, dst, settings)
    if glide >= settings.slide_glide and _glide_attack(src, dst, settings):
        dst.add_technique("slide")
    elif attack < settings.legato_attack:
        if abs(interval) > settings.max_hammer:
            dst.add_technique("slide")
        elif interval > 0:
            dst.add_technique("hammer_on")
        else:
            dst.add_technique("pull_off")


# -- let ring --------------------------------------------------------------------------
def _let_ring_mark(notes: Sequence[Note], i: int, settings: Settings) -> None:
    note = notes[i]
    if note.end - note.start < settings.ring_length:
        return
    under = 0
    for later in notes[i + 1 :]:
        if later.start >= note.end - settings.ring_margin:
            break
        if later.start > note.start + 0.05 and (note.string < 0 or later.string != note.string):
            under += 1
    if under >= settings.ring_under:
        note.add_technique("let_ring")


# -- after fingering -------------------------------------------------------------------
def verify(notes: Sequence[Note], last: dict[int, Note] | None = None) -> dict[int, Note]:
    """Drop the marks the fingering made impossible (notes in time order, fingered).

    A hammer-on, pull-off or slide must leave the previous note on its own string (a
    hammer-on lands on a fretted note, a pull-off leaves one, a slide moves between two);
    nothing bends or shakes an open string.

    Args:
        notes: fingered notes, in start order.
        last: string -> the last note seen on it before `notes` (for a stream).

    Returns:
        string -> the last note on it after `notes` (pass it to the next call).
    """
    last = dict(last or {})
    for note in sort_notes(notes):
        if note.string < 0:
            continue
        prev = last.get(note.string)
        marks = note.techniques
        keep = [t for t in marks if t not in _LEGATO]
        for t in (m for m in marks if m in _LEGATO):
            if prev is None or prev.pitch == note.pitch or note.start - prev.end > DEFAULT.legato_gap:
                continue
            if t == "hammer_on" and (note.pitch < prev.pitch or note.fret == 0):
                continue
            if t == "pull_off" and (note.pitch > prev.pitch or prev.fret == 0):
                continue
            if t == "slide" and (note.fret == 0 or prev.fret == 0):
                continue
            keep.append(t)
        if note.fret == 0:
            keep = [t for t in keep if t not in ("bend", "vibrato")]
        if keep != marks:
            note.technique = ",".join(keep)
        last[note.string] = note
    return last


class TechniqueStream:
    """`detect` on a stream: takes notes final up to a time, returns those whose marks are final.

    A note is held until every note that could change its marks is known: a bend's
    target (it starts when the note ends), the notes that may ring under it (until it
    ends, at most `hold` seconds after its start). Recently released notes stay as
    context for the legato source of the next ones.

    Args:
        tuning: the instrument.
        settings: thresholds.
        hold: longest a note is held for its let-ring decision, seconds.
    """

    def __init__(self, tuning: Tuning, settings: Settings = DEFAULT, hold: float = 3.0) -> None:
        self.tuning = tuning
        self.settings = settings
        self.hold = hold
        self._pending: list[Note] = []
        self._context: list[Note] = []      # released, kept as legato sources
        self.marked = 0

    def push(self, notes: Iterable[Note], final_until: float) -> tuple[list[Note], float]:
        """Add notes final up to `final_until` seconds.

        Returns:
            (notes released, in start order, marks final; the time before which every
            note has been released).
        """
        self._pending = sort_notes([*self._pending, *notes])
        return self._release(final_until)

    def flush(self) -> list[Note]:
        """End of stream: mark and release everything held."""
        released, _ = self._release(float("inf"))
        return released

    def _release(self, final_until: float) -> tuple[list[Note], float]:
        s = self.settings
        frozen = frozenset(id(n) for n in self._context)
        work = merge_bends(sort_notes([*self._context, *self._pending]), s, frozen)
        pending = {id(n) for n in self._pending}
        kept = [n for n in work if id(n) in pending]
        ready = [n for n in kept if min(n.end, n.start + self.hold) + s.legato_gap + 0.05 <= final_until]
        ready_ids = {id(n) for n in ready}
        # Everything from the first note still held on waits, keeping the output in order.
        cut = next((k for k, n in enumerate(kept) if id(n) not in ready_ids), len(kept))
        ready = kept[:cut]
        index = {id(n): k for k, n in enumerate(work)}
        for note in ready:
            _bend_or_vibrato(note, s)
        for note in ready:
            _legato_mark(work, index[id(note)], s)
            if self.tuning.instrument != "bass":
                _let_ring_mark(work, index[id(note)], s)
            if note.technique:
                self.marked += 1
        self._pending = kept[cut:]
        horizon = min(final_until, self._pending[0].start) if self._pending else final_until
        latest = ready[-1].start if ready else (self._context[-1].start if self._context else 0.0)
        self._context = [n for n in [*self._context, *ready] if n.end >= latest - s.max_legato_dt]
        return ready, horizon
