"""Which events belong to a lead line: fast single notes in the upper register, few chords.

Tabbers play a lead line (a solo, a melody over the band) in a box up the neck rather
than in first position, where the same pitches also lie: the fingering search
alone, seeing only that the lower box is a little cheaper, keeps such lines low (on the
dev songs of bench/human_tabs.py the engine's single notes sat at frets 1-3 far more
often than the tabbers', and at frets 7-9 far less). This module marks the events of
such lines so the search can price a hand low on the neck there (`Weights.lead_low`).
A line is lead where, around the event, nearly every event is a single note and the
notes are fast and well above the low E string (on a 6-string, the lowest), or high
(`TIERS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tabagent.fretboard import Event
from tabagent.tuning import Tuning

WINDOW = 2.0        # seconds either side of the event
SINGLE_SHARE = 0.9  # share of single-note events in the window
# (events per second, mean pitch in semitones above the sixth string from the top): a fast line
# from B3 up on a guitar, or any line of at least two notes a second from E4 (the top
# string) up. An open-position melody (three eighth notes a second around C4) is neither.
TIERS = ((4.0, 19), (2.0, 24))


def lead_flags(events: Sequence[Event], tuning: Tuning) -> list[bool]:
    """Per event (in onset order), whether it is a single note of a lead line."""
    if not events:
        return []
    onsets = np.array([e.onset for e in events])
    single = np.array([len(e.notes) == 1 for e in events], dtype=float)
    # Height above the sixth string from the top: a 7-string's extra low string does not
    # move where a lead line sits.
    base = sorted(tuning.sounding)[-min(6, len(tuning.sounding))]
    height = np.array([np.mean([n.pitch for n in e.notes]) for e in events]) - base
    cum_single = np.concatenate([[0.0], np.cumsum(single)])
    cum_height = np.concatenate([[0.0], np.cumsum(height)])
    lo = np.searchsorted(onsets, onsets - WINDOW, side="left")
    hi = np.searchsorted(onsets, onsets + WINDOW, side="right")
    count = hi - lo
    share = (cum_single[hi] - cum_single[lo]) / count
    mean_height = (cum_height[hi] - cum_height[lo]) / count
    rate = count / (2 * WINDOW)
    line = (single > 0) & (share >= SINGLE_SHARE)
    lead = np.zeros(len(events), dtype=bool)
    for min_rate, min_height in TIERS:
        lead |= line & (rate >= min_rate) & (mean_height >= min_height)
    return [bool(x) for x in lead]
