"""Composes one frame: background, static panels, then what moves (beats, notes, playhead, fingers)."""

from __future__ import annotations

from tabagent.notes import Note
from video_svc.background import Background
from video_svc.canvas import Canvas, Scaler, yuv_of
from video_svc.hud import Hud
from video_svc.layout import Highlight, Layout
from video_svc.motion import Cue
from video_svc.overlay import SpriteBook, mix_color, static_patches
from video_svc.styles import Style
from video_svc.timeline import NoteTimeline


class FramePainter:
    """Draws the frames of one stream.

    Everything that does not move is drawn once (the panels as premultiplied YUV
    patches, the note labels and finger dots as sprites); per frame only the background
    is scaled in and the moving parts are copied on with slice operations.

    Args:
        layout: the geometry (its `notes` are the ones drawn).
        style: the preset.
        background: draws the image under the panels.
        reference: draw with the slower reference path (tests and benchmarks).
    """

    def __init__(
        self, layout: Layout, style: Style, background: Background, expected_seconds: float = 0.0, reference: bool = False
    ) -> None:
        if layout.notes is None:
            raise ValueError("the painter needs a layout with notes")
        self.layout = layout
        self.timeline: NoteTimeline = layout.notes
        self.style = style
        self.background = background
        # reference=True: the slower path (a fresh swscale context and packed copies per
        # frame) that the fast one must match pixel for pixel.
        self._scaler = None if reference else Scaler(layout.width, layout.height)
        self.patches = static_patches(layout, style)
        self.sprites = SpriteBook(layout, style)
        self.hud = Hud(layout, style, self.timeline, expected_seconds)
        self.bar_yuv = yuv_of(mix_color(style.line, style.text, 0.5))
        self.beat_yuv = yuv_of(mix_color(style.fret, style.panel, 0.45))
        self.playhead_yuv = yuv_of(style.highlight)
        self.glow_yuv = yuv_of(mix_color(style.highlight, style.panel, 0.55))
        self._sustain = {
            (i, s): yuv_of(self.sprites.sustain_color(i, s))
            for i, p in enumerate(layout.parts)
            for s in range(p.strings)
        }

    def paint(self, cue: Cue) -> Canvas:
        """Draw the frame of `cue` (song time cue.t) and return its canvas."""
        lay = self.layout
        rgb = self.background.render(cue)
        if self._scaler is not None:
            canvas = self._scaler.canvas(rgb)
        else:
            canvas = Canvas.from_rgb(rgb, lay.width, lay.height)
        for patch in self.patches:
            patch.apply(canvas)
        highlights = lay.highlighted(cue.t)
        for i, _ in enumerate(lay.parts):
            self._paint_part(canvas, i, cue, [h for h in highlights if h.part == lay.parts[i].name])
        self.hud.paint(canvas, cue.t)
        return canvas

    def _paint_part(self, canvas: Canvas, index: int, cue: Cue, highlights: list[Highlight]) -> None:
        lay = self.layout
        p = lay.parts[index]
        t = cue.t
        sx0, sy0, sx1, sy1 = p.staff
        top, bottom = p.string_y[-1] - p.spacing // 2, p.string_y[0] + p.spacing // 2 + 1
        t0, t1 = lay.window(t)
        pad = 0.5 * p.spacing / lay.pixels_per_second
        # Beats and bars, behind everything else on the staff.
        for when, bar in self.timeline.beats_between(t0, t1):
            x = int(round(lay.x_at(when, t)))
            if sx0 <= x < sx1:
                if bar:
                    canvas.fill(x - 1, top, x + 1, bottom, self.bar_yuv)
                else:
                    canvas.fill(x, top + p.spacing // 2, x + 1, bottom - p.spacing // 2, self.beat_yuv)
        notes = self.timeline.between(p.name, t0 - pad, t1 + pad)
        lit_ids = {id(n) for n in lay.lit(p.name, t)}
        thick = max(1, p.spacing // 7)
        for n in notes:
            if n.string >= p.strings:
                continue
            y = p.string_y[n.string]
            xa = max(int(round(lay.x_at(n.start, t))), sx0)
            xb = min(int(round(lay.x_at(n.end, t))), sx1)
            if xb > xa:
                canvas.fill(xa, y - thick, xb, y + thick + 1, self._sustain[(index, n.string)])
        # The playhead swells on each beat.
        px = lay.playhead_x
        w = 1 + int(round(cue.beat * max(1, p.spacing // 5)))
        canvas.fill(px - w - 2, top, px + w + 2, bottom, self.glow_yuv)
        canvas.fill(px - w, top, px + w, bottom, self.playhead_yuv)
        lit_notes = []
        for n in notes:
            if n.string >= p.strings:
                continue
            if id(n) in lit_ids:
                lit_notes.append(n)
                continue
            self._label(canvas, index, n, lay.x_at(n.start, t), False)
        for n in lit_notes:
            self._label(canvas, index, n, lay.x_at(n.start, t), True)
        for h in highlights:
            sprite = self.sprites.finger(index, h.fret)
            x0, y0, x1, y1 = h.rect
            canvas.blit(sprite, (x0 + x1 - sprite.width) // 2 + 1, (y0 + y1 - sprite.height) // 2 + 1)

    def _label(self, canvas: Canvas, index: int, note: Note, x: float, lit: bool) -> None:
        p = self.layout.parts[index]
        sprite = self.sprites.label(index, note.string, note.fret, lit, note.technique)
        y = p.string_y[note.string]
        canvas.blit(
            sprite,
            int(round(x)) - sprite.width // 2 + 1,
            y - sprite.height // 2 + 1,
            clip_x=(p.staff[0], p.staff[2]),
        )
