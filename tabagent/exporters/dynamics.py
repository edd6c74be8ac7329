"""A few dynamics for a part, from its notes' loudness, as notation programs show them.

Guitar Pro stores a velocity on every note and a program importing it (MuseScore)
writes a dynamic wherever the velocity changes, so raw per-note loudness becomes a
marking on almost every note. `bar_levels` gives each bar one of `LEVELS` (p, mf, f:
the part's quiet, middle and loud thirds of its bar medians; mf throughout when they
barely differ) and keeps a level until
the loudness has clearly moved: a change needs the bar's median past the next third's
edge by `MARGIN`, so the marks appear where the playing gets louder or softer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (name, MIDI velocity Guitar Pro stores for it)
LEVELS = (("p", 47), ("mf", 79), ("f", 95))
MARGIN = 0.05     # of the 0..1 loudness scale
EVEN = 0.1        # bar medians spread less than this: one level (mf) throughout


def bar_levels(bars: Sequence[Sequence[float]]) -> list[int]:
    """The level (index into LEVELS) of each bar, from the loudness (0..1) of its notes.

    Args:
        bars: the velocities of the notes starting in each bar (empty for a bar of rests).

    Returns:
        One index per bar; a bar with no notes keeps the level before it.
    """
    medians = [float(np.median(v)) if len(v) else None for v in bars]
    known = [m for m in medians if m is not None]
    if not known:
        return [1] * len(bars)
    low, high = (float(x) for x in np.percentile(known, [33.3, 66.7]))
    if max(known) - min(known) < EVEN:
        return [1] * len(bars)
    edges = (low, high)
    out: list[int] = []
    level = 1
    for m in medians:
        if m is not None:
            raw = int(np.searchsorted(edges, m))
            louder = raw > level and m >= edges[raw - 1] + MARGIN
            softer = raw < level and m <= edges[raw] - MARGIN
            if louder or softer or not out:
                level = raw
        out.append(level)
    return out


def velocity(level: int) -> int:
    """The MIDI velocity written for a level."""
    return LEVELS[level][1]
