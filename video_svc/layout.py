"""Where everything sits on the frame: panels, staff lines, fretboard cells, the playhead.

The layout is a pure function of the frame size and the parts' tunings, so a test can
rebuild the renderer's layout and ask, for any time, which notes are highlighted and at
which pixels (`Layout.highlighted`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tabagent.notes import Note
from tabagent.tuning import Tuning
from video_svc.timeline import NoteTimeline

Rect = tuple[int, int, int, int]   # x0, y0, x1, y1 (x1, y1 exclusive)

PAST_SECONDS = 1.0        # staff shown left of the playhead
AHEAD_SECONDS = 3.0       # staff shown right of it: frames wait until notes are final this far
MIN_HOLD = 0.1            # a note stays highlighted at least this long
MAX_FRETS_SHOWN = 24


class Highlight(NamedTuple):
    """A note lit in a frame: its part, string (0 = lowest), fret and fretboard cell."""

    part: str
    string: int
    fret: int
    rect: Rect


@dataclass(frozen=True)
class PartLayout:
    """The panel of one part: header, scrolling staff and fretboard."""

    name: str
    tuning: Tuning
    panel: Rect
    header: Rect
    staff: Rect
    string_y: tuple[int, ...]        # staff line per string, index 0 = lowest (drawn at the bottom)
    spacing: int                     # pixels between staff lines
    board: Rect
    board_string_y: tuple[int, ...]
    board_spacing: int
    frets_shown: int
    cell_width: float
    board_pitch: float                   # exact row height of the fretboard (board_spacing rounded)

    @property
    def strings(self) -> int:
        return len(self.string_y)

    def fret_x(self, fret: int) -> int:
        """x of the wire that closes fret `fret` (fret 0's wire is the nut)."""
        return int(round(self.board[0] + (fret + 1) * self.cell_width))

    def cell(self, string: int, fret: int) -> Rect:
        """The fretboard cell a finger presses for (string, fret); fret 0 lies left of the nut."""
        f = min(fret, self.frets_shown)
        x0 = int(round(self.board[0] + f * self.cell_width))
        x1 = int(round(self.board[0] + (f + 1) * self.cell_width))
        row = self.strings - 1 - string          # the highest string is the top row
        y0 = int(round(self.board[1] + row * self.board_pitch))
        y1 = int(round(self.board[1] + (row + 1) * self.board_pitch))
        return (x0, y0, x1, y1)


class Layout:
    """The frame's geometry for a set of parts, and the notes lit at any time.

    Args:
        width, height: frame size in pixels.
        fps: frame rate; a frame starting at t covers [t, t + 1/fps).
        parts: (name, tuning) per part, top to bottom.
        title: shown in the title bar.
        notes: the notes to answer `highlighted` from.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: int,
        parts: Sequence[tuple[str, Tuning]],
        title: str = "",
        notes: NoteTimeline | None = None,
    ) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.title = title
        self.notes = notes
        self.margin = max(4, int(round(0.016 * height)))
        self.title_rect: Rect = (0, 0, width, max(12, int(round(0.075 * height))) & ~1)
        self.parts: list[PartLayout] = []
        self._build(parts)
        # The top band: everything above the parts (they sit at the bottom), the title bar
        # at its top; the hud writes the chord, bar, tempo and progress into it.
        below = self.parts[0].panel[1] - self.margin // 2 if self.parts else self.title_rect[3]
        self.band: Rect = (0, 0, width, max(self.title_rect[3], below) & ~1)
        staff = self.parts[0].staff if self.parts else (self.margin, 0, width - self.margin, 0)
        span = staff[2] - staff[0]
        self.pixels_per_second = span / (PAST_SECONDS + AHEAD_SECONDS)
        self.playhead_x = int(round(staff[0] + PAST_SECONDS * self.pixels_per_second))

    def _build(self, parts: Sequence[tuple[str, Tuning]]) -> None:
        if not parts:
            return
        h, w, m = self.height, self.width, self.margin
        counts = [len(t.strings) for _, t in parts]
        # Heights in units of the staff spacing s: header 1.1 s, staff n s, board 0.75 n s, padding.
        units = sum(2.0 + 1.75 * n for n in counts)
        room = h - self.title_rect[3] - m * (len(parts) + 1)
        s = min(0.034 * h, room / units)
        b = 0.75 * s
        name_col = int(round(1.6 * s))
        r = lambda v: int(round(v))  # noqa: E731 - positions stay float until drawn
        y = h - m - sum((2.0 + 1.75 * n) * s for n in counts) - m * (len(parts) - 1)
        for (name, tuning), n in zip(parts, counts, strict=True):
            top = y
            staff_top = top + 1.4 * s
            board_top = staff_top + n * s + 0.3 * s
            bottom = board_top + n * b + 0.3 * s
            staff = (m + name_col, r(staff_top), w - m, r(staff_top + n * s))
            board = (m + name_col, r(board_top), w - m, r(board_top + n * b))
            frets = max(1, min(tuning.max_fret - tuning.capo, MAX_FRETS_SHOWN))
            self.parts.append(
                PartLayout(
                    name=name,
                    tuning=tuning,
                    panel=(m // 2, r(top), w - m // 2, r(bottom)),
                    header=(m, r(top), w - m, r(top + 1.1 * s)),
                    staff=staff,
                    string_y=tuple(r(staff_top + (n - 1 - i + 0.5) * s) for i in range(n)),
                    spacing=max(2, r(s)),
                    board=board,
                    board_string_y=tuple(r(board_top + (n - 1 - i + 0.5) * b) for i in range(n)),
                    board_spacing=max(2, r(b)),
                    frets_shown=frets,
                    cell_width=(board[2] - board[0]) / (frets + 1),
                    board_pitch=(board[3] - board[1]) / n,
                )
            )
            y = bottom + m

    # -- time ---------------------------------------------------------------------------

    @property
    def frame_seconds(self) -> float:
        return 1.0 / self.fps

    def x_at(self, when: float, t: float) -> float:
        """Staff x of an event at song time `when`, in the frame at song time `t`."""
        return self.playhead_x + (when - t) * self.pixels_per_second

    def window(self, t: float) -> tuple[float, float]:
        """Song times at the staff's left and right edges in the frame at `t`."""
        return t - PAST_SECONDS, t + AHEAD_SECONDS

    def part(self, name: str) -> PartLayout:
        """The layout of part `name`."""
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    def lit(self, part: str, t: float) -> list[Note]:
        """A part's notes lit in the frame starting at `t`: onset before the frame ends and
        still held (at least MIN_HOLD) when it starts."""
        if self.notes is None:
            raise ValueError("this layout has no notes to highlight")
        t1 = t + self.frame_seconds
        return [
            n
            for n in self.notes.between(part, t - MIN_HOLD, t1)
            if n.start < t1 and max(n.end, n.start + MIN_HOLD) > t
        ]

    def highlighted(self, t: float) -> list[Highlight]:
        """Notes highlighted in the frame starting at song time `t`, with their fretboard cells.

        A note is lit from the frame whose window [t, t + 1/fps) contains its onset until it
        ends (at least MIN_HOLD seconds).
        """
        out: list[Highlight] = []
        seen: set[tuple[str, int, int]] = set()
        for p in self.parts:
            for n in self.lit(p.name, t):
                key = (p.name, n.string, n.fret)
                if key in seen or n.string >= p.strings:
                    continue
                seen.add(key)
                out.append(Highlight(p.name, n.string, n.fret, p.cell(n.string, n.fret)))
        return out
