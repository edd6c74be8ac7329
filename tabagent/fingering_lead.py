"""Which events belong to a lead line: fast single notes in the upper register, few chords.

Tabbers play a lead line (a solo, a melody over the band) in a box up the neck rather
than in first position, where the same pitches also lie: the fingering search
alone, seeing only that the lower box is a little cheaper, keeps such lines low (on the
dev songs of bench/human_tabs.py the engine's single notes sat at frets 1-3 far more
often than the tabbers', and at frets 7-9 far less). This module marks the events of
such lines so the search can price a fretted hand low on the neck there
(`Weights.lead_low`). A line is lead where, around the event, nearly every event is a
single note, there are several a second, and their mean pitch lies well above the
lowest open string.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tabagent.fretboard import Event
from tabagent.tuning import Tuning

WINDOW = 2.0        # seconds either side of the event
SINGLE_SHARE = 0.9  # share of single-note events in the window
RATE = 4.0          # events per second in the window
HEIGHT = 19         # mean pitch, semitones above the lowest open string (B3 on a guitar)


def lead_flags(events: Sequence[Event], tuning: Tuning) -> list[bool]:
    """Per event (in onset order), whether it is a single note of a lead line."""
    if not events:
        return []
    onsets = np.array([e.onset for e in events])
    single = np.array([len(e.notes) == 1 for e in events], dtype=float)
    height = np.array([np.mean([n.pitch for n in e.notes]) for e in events]) - min(tuning.sounding)
    cum_single = np.concatenate([[0.0], np.cumsum(single)])
    cum_height = np.concatenate([[0.0], np.cumsum(height)])
    lo = np.searchsorted(onsets, onsets - WINDOW, side="left")
    hi = np.searchsorted(onsets, onsets + WINDOW, side="right")
    count = hi - lo
    share = (cum_single[hi] - cum_single[lo]) / count
    mean_height = (cum_height[hi] - cum_height[lo]) / count
    lead = (single > 0) & (share >= SINGLE_SHARE) & (count / (2 * WINDOW) >= RATE) & (mean_height >= HEIGHT)
    return [bool(x) for x in lead]
