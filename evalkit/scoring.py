"""The scores every test and benchmark uses: note onset F1 and string collisions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tabagent.notes import Note

ONSET_TOLERANCE = 0.05     # seconds: mir_eval's default, and the literature's
COLLISION_TOLERANCE = 1e-6  # seconds of overlap below which two notes on a string do not collide


@dataclass
class Scores:
    """Onset precision, recall and F1."""

    precision: float
    recall: float
    f1: float

    def __str__(self) -> str:
        return f"P {self.precision:.3f}  R {self.recall:.3f}  F1 {self.f1:.3f}"


def _arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    # mir_eval wants positive durations; offsets are ignored, so any will do.
    intervals = np.array([[n.start, max(n.end, n.start + 0.01)] for n in notes]).reshape(-1, 2)
    pitches = np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in notes])
    return intervals, pitches


def onset_scores(reference: Sequence[Note], estimate: Iterable[Note],
                 tolerance: float = ONSET_TOLERANCE) -> Scores:
    """mir_eval.transcription note precision, recall and F1 on onsets and pitch.

    A note matches when its onset is within `tolerance` seconds and its pitch within 50
    cents of a reference note's; offsets are ignored (offset_ratio=None).

    Returns:
        All zero when either side has no notes.
    """
    import mir_eval

    estimate = list(estimate)
    if not reference or not estimate:
        return Scores(0.0, 0.0, 0.0)
    ref_i, ref_p = _arrays(reference)
    est_i, est_p = _arrays(estimate)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_i, ref_p, est_i, est_p, onset_tolerance=tolerance, offset_ratio=None
    )
    return Scores(float(p), float(r), float(f))


def onset_matches(reference: Sequence[Note], estimate: Sequence[Note],
                  tolerance: float = ONSET_TOLERANCE) -> list[tuple[int, int]]:
    """(reference index, estimate index) of the notes `onset_scores` matches."""
    import mir_eval

    if not reference or not estimate:
        return []
    ref_i, ref_p = _arrays(reference)
    est_i, est_p = _arrays(estimate)
    return list(mir_eval.transcription.match_notes(
        ref_i, ref_p, est_i, est_p, onset_tolerance=tolerance, offset_ratio=None))


def count_collisions(notes: Iterable[Note], tolerance: float = COLLISION_TOLERANCE) -> int:
    """Pairs of placed notes sounding at the same time on the same string.

    Every overlapping pair counts (a long note under two short ones is two collisions);
    notes with no string (out of range) are not placed and never collide.
    """
    by_string: dict[int, list[Note]] = {}
    for note in notes:
        if note.string >= 0:
            by_string.setdefault(note.string, []).append(note)
    count = 0
    for group in by_string.values():
        group.sort(key=lambda n: n.start)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b.start >= a.end - tolerance:
                    break
                count += 1
    return count


@dataclass
class TechniqueScore:
    """Precision and recall of one technique: marked notes that match a reference note so marked."""

    technique: str
    true_positive: int
    marked: int        # estimated notes carrying the technique
    expected: int      # reference notes carrying it

    @property
    def precision(self) -> float:
        return self.true_positive / self.marked if self.marked else 0.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.expected if self.expected else 0.0


def technique_scores(reference: Sequence[Note], estimate: Sequence[Note], techniques: Sequence[str],
                     tolerance: float = ONSET_TOLERANCE) -> dict[str, TechniqueScore]:
    """Per technique: estimated notes marked with it that match (onset and pitch, as
    `onset_scores`) a reference note marked with it, over all marked / all expected.

    A technique on a note the transcriber missed, or put on a note that is not there,
    counts against recall or precision like a wrong mark.
    """
    pairs = dict(onset_matches(reference, estimate, tolerance))
    matched_est = {e: r for r, e in pairs.items()}
    out = {}
    for name in techniques:
        marked = [i for i, n in enumerate(estimate) if name in n.techniques]
        expected = [i for i, n in enumerate(reference) if name in n.techniques]
        hits = sum(1 for i in marked if i in matched_est and name in reference[matched_est[i]].techniques)
        out[name] = TechniqueScore(name, hits, len(marked), len(expected))
    return out
