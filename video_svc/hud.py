"""What the video tells besides the notes: bar numbers, chord names, tempo, time and progress.

The top band (above the parts) holds, drawn once, the title and the parts with their
tunings (video_svc.overlay); per frame, on its right, the chord of the bar being played
(large), its bar number and the tempo, and along its bottom edge the song's progress
line with the time. On each part's staff, every bar line carries its bar number, and
above the first part's staff the chord names sit where the chords change. Bars are
numbered as the tabs number them (NoteTimeline.bar_at) and chords are named bar by bar
from every part's notes (tabagent.chords), once a bar's notes are final.

Text becomes sprites once (per text and size) and is copied on like the note labels.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image, ImageDraw

from tabagent.chords import chord_marks
from video_svc.canvas import Canvas, Sprite, yuv_of
from video_svc.layout import Layout
from video_svc.overlay import font, header_end, mix_color
from video_svc.styles import RGB, Style
from video_svc.timeline import NoteTimeline

_TEXT_LOCK = threading.RLock()   # FreeType faces are shared by every stream (see overlay)
MAX_CACHED = 512


def text_sprite(text: str, size: int, color: RGB) -> Sprite:
    """`text` in the bold font at `size` pixels, on transparent ground."""
    with _TEXT_LOCK:
        f = font(size)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        b = probe.textbbox((0, 0), text, font=f)
        img = Image.new("RGBA", (max(2, int(b[2] - b[0]) + 2), max(2, int(b[3] - b[1]) + 2)), (0, 0, 0, 0))
        ImageDraw.Draw(img).text((1 - b[0], 1 - b[1]), text, font=f, fill=color + (255,))
    return Sprite.from_rgba(np.asarray(img))


def clock(seconds: float) -> str:
    m, s = divmod(max(0, int(seconds)), 60)
    return f"{m}:{s:02d}"


class Hud:
    """Draws the per-frame text and marks of one stream (see the module docstring).

    Args:
        layout: the frame's geometry.
        style: the preset's colours.
        timeline: the stream's notes and beats.
        expected_seconds: the song's length when known (0: the progress line waits for it).
    """

    def __init__(self, layout: Layout, style: Style, timeline: NoteTimeline, expected_seconds: float = 0.0) -> None:
        self.layout = layout
        self.style = style
        self.timeline = timeline
        self.expected = expected_seconds
        self._sprites: dict[tuple[str, int, RGB], Sprite] = {}
        self._chords: dict[float, list[tuple[float, str]]] = {}
        # A bar whose notes are not all final yet: named again only when more are.
        self._draft: dict[float, tuple[float, list[tuple[float, str]]]] = {}
        self.track_yuv = yuv_of(mix_color(style.line, style.panel, 0.55))
        self.done_yuv = yuv_of(style.highlight)
        self.dim = mix_color(style.text, style.panel, 0.35)
        band = layout.band
        self.band_h = band[3] - band[1]
        self.big = max(10, int(self.band_h * 0.34))
        self.small = max(8, int(layout.title_rect[3] * 0.34))
        first = layout.parts[0] if layout.parts else None
        self.number_size = max(7, int(first.spacing * 0.5)) if first else 8
        self.chord_size = max(8, int(first.spacing * 0.75)) if first else 10
        self.header_end = [header_end(p, layout) for p in layout.parts]

    def sprite(self, text: str, size: int, color: RGB) -> Sprite:
        key = (text, size, color)
        found = self._sprites.get(key)
        if found is None:
            if len(self._sprites) > MAX_CACHED:
                self._sprites.clear()
            found = self._sprites[key] = text_sprite(text, size, color)
        return found

    # -- chords ---------------------------------------------------------------------------

    def chords_of_bar(self, start: float, end: float) -> list[tuple[float, str]]:
        """(start, name) of the chords of the bar [start, end), from every part's notes;
        kept once the bar's notes are final."""
        key = round(start, 3)
        cached = self._chords.get(key)
        if cached is not None:
            return cached
        tl = self.timeline
        known = tl.known_until()
        draft = self._draft.get(key)
        if draft is not None and draft[0] == known:
            return draft[1]
        notes = [n for p in self.layout.parts for n in tl.between(p.name, start, end)]
        beats = [t for t, _ in tl.beats_between(start - 1e-3, end - 1e-3)] or [start]
        if len(beats) < 2:
            beats = [start, start + (end - start) / 2]
        marks = chord_marks(notes, beats, [start], end=end)
        out = [(max(m.start, start), m.name) for m in marks if m.start < end]
        if known >= end:
            if len(self._chords) > MAX_CACHED:
                self._chords.clear()
            self._chords[key] = out
            self._draft.pop(key, None)
        else:
            if len(self._draft) > MAX_CACHED:
                self._draft.clear()
            self._draft[key] = (known, out)
        return out

    def chord_at(self, t: float) -> str:
        bar = self.timeline.bar_at(t)
        if bar is None:
            return ""
        name = ""
        for when, chord in self.chords_of_bar(bar[1], bar[2]):
            if when <= t + 1e-6:
                name = chord
        return name

    # -- drawing ------------------------------------------------------------------------------

    def paint(self, canvas: Canvas, t: float) -> None:
        """Draw the band's moving parts and every staff's bar numbers and chord names."""
        self._band(canvas, t)
        t0, t1 = self.layout.window(t)
        downbeats = [when for when, is_bar in self.timeline.beats_between(t0, t1) if is_bar]
        for index, _ in enumerate(self.layout.parts):
            self._staff(canvas, index, t, downbeats)

    def _band(self, canvas: Canvas, t: float) -> None:
        lay, style = self.layout, self.style
        bx0, by0, bx1, by1 = lay.band
        m = lay.margin
        right = bx1 - 2 * m
        # The progress line along the band's bottom edge, with the time at its right end.
        total = self.expected if self.expected > 0 else 0.0
        text = f"{clock(t)} / {clock(total)}" if total else clock(t)
        time_sprite = self.sprite(text, self.small, self.dim)
        line_y = by1 - max(3, m // 2) - 2
        x0, x1 = bx0 + 2 * m, right - time_sprite.width - m
        thick = max(2, self.band_h // 60) & ~1 or 2
        canvas.fill(x0, line_y, x1, line_y + thick, self.track_yuv)
        if total:
            done = x0 + int(round((x1 - x0) * min(1.0, max(0.0, t / total))))
            canvas.fill(x0, line_y - 1, done, line_y + thick + 1, self.done_yuv)
        canvas.blit(time_sprite, right - time_sprite.width, line_y + thick // 2 - time_sprite.height // 2)
        # The chord being played, large, and under it the bar number and the tempo.
        tl = self.timeline
        chord = self.chord_at(t)
        top = lay.title_rect[1] + max(2, m // 2)
        if chord:
            s = self.sprite(chord, self.big, style.highlight)
            canvas.blit(s, right - s.width, top)
            top += s.height + max(2, m // 2)
        bar = tl.bar_at(t)
        info = []
        if bar is not None:
            info.append(f"bar {bar[0]}")
        if tl.tempo > 0:
            info.append(f"\u2669 = {tl.tempo:.0f}  {tl.beats_per_bar}/4")
        if info:
            s = self.sprite("   ".join(info), self.small, style.text)
            if top + s.height < line_y - 2:
                canvas.blit(s, right - s.width, top)

    def _staff(self, canvas: Canvas, index: int, t: float, downbeats: list[float]) -> None:
        lay, tl = self.layout, self.timeline
        p = lay.parts[index]
        sx0, _, sx1, _ = p.staff
        t0 = lay.window(t)[0]
        top = p.string_y[-1] - p.spacing // 2
        clip = (max(sx0, self.header_end[index]), sx1)   # never over the strings' or the part's names
        for when in downbeats:
            number = tl.bar_number(when)
            if number is None:
                continue
            s = self.sprite(str(number), self.number_size, self.dim)
            x = int(round(lay.x_at(when, t))) + 3
            canvas.blit(s, x, top - s.height, clip_x=clip)
        if index != 0:
            return
        # Chord names over the first part's staff, at each change (a bar's chords stay
        # named from its downbeat on, and the bar before the window's first downbeat too).
        starts = downbeats
        current = tl.bar_at(t0)
        bars = ([(current[1], current[2])] if current is not None else [])
        for i, when in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else (tl.bar_at(when) or (0, when, when + 2.0))[2]
            bars.append((when, end))
        last = ""
        y = p.header[1]
        for start, end in bars:
            for when, name in self.chords_of_bar(start, end):
                if name == last:
                    continue
                last = name
                x = int(round(lay.x_at(when, t)))
                s = self.sprite(name, self.chord_size, self.style.highlight)
                canvas.blit(s, x, y, clip_x=clip)
