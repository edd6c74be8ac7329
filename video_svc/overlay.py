"""What is drawn once per stream with Pillow: the static panels, staff, fretboard, and the sprites."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tabagent.tuning import midi_to_note_name
from video_svc.canvas import OverlayPatch, Sprite
from video_svc.layout import Layout, PartLayout
from video_svc.styles import RGB, Style

log = logging.getLogger(__name__)

_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
)
INLAYS = (3, 5, 7, 9, 15, 17, 19, 21)
TECHNIQUE_MARKS = {"hammer_on": "h", "pull_off": "p", "slide": "/", "bend": "b", "vibrato": "~"}
DOUBLE_INLAYS = (12, 24)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# Fonts are cached and shared by every stream; FreeType faces are not safe to render
# from two threads at once, and text is only drawn when a stream starts or meets a new
# fret number, so one lock costs nothing.
_TEXT_LOCK = threading.RLock()


@functools.lru_cache(maxsize=64)
def font(size: int) -> Font:
    """A bold sans-serif font of `size` pixels (a system font, else Pillow's own)."""
    size = max(6, int(size))
    for path in _FONT_FILES:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, f: Font) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in draw.textbbox((0, 0), text, font=f))  # type: ignore[return-value]


def mix_color(a: RGB, b: RGB, k: float) -> RGB:
    """`a` moved a fraction `k` of the way to `b`."""
    return (
        int(a[0] * (1 - k) + b[0] * k),
        int(a[1] * (1 - k) + b[1] * k),
        int(a[2] * (1 - k) + b[2] * k),
    )


def static_patches(layout: Layout, style: Style) -> list[OverlayPatch]:
    """Draw the title bar and every part's panel, staff lines and fretboard once.

    Returns:
        One blend patch per panel (title bar first).
    """
    with _TEXT_LOCK:
        return _static_patches(layout, style)


def _static_patches(layout: Layout, style: Style) -> list[OverlayPatch]:
    img = Image.new("RGB", (layout.width, layout.height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    bx0, by0, bx1, by1 = layout.band
    draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=style.panel)
    tx0, ty0, tx1, ty1 = layout.title_rect
    tf = font(int((ty1 - ty0) * 0.55))
    title = layout.title or "Tab Agent"
    bbox = _text_size(draw, title, tf)
    draw.text((layout.margin * 2, (ty0 + ty1 - (bbox[3] - bbox[1])) // 2 - bbox[1]), title, font=tf, fill=style.text)
    # Under the title: the parts with their tunings, and the style (the right side of the
    # band is the hud's: chord, bar, tempo).
    small = font(int((ty1 - ty0) * 0.34))
    lines = [f"{p.name}  {' '.join(midi_to_note_name(s)[:-1] for s in p.tuning.strings)}"
             + (f"  capo {p.tuning.capo}" if p.tuning.capo else "") for p in layout.parts]
    y = ty1
    for line in [" \u00b7 ".join(lines), style.name.replace("_", " ")]:
        ib = _text_size(draw, line, small)
        if y + (ib[3] - ib[1]) > by1 - layout.margin - 4:
            break
        draw.text((layout.margin * 2, y - ib[1]), line, font=small, fill=mix_color(style.text, style.panel, 0.3))
        y += (ib[3] - ib[1]) + layout.margin // 2
    patches = [OverlayPatch.from_rgb(np.asarray(img), *layout.band)]
    for part in layout.parts:
        _draw_part(draw, part, layout, style)
        patches.append(OverlayPatch.from_rgb(np.asarray(img), *part.panel))
    return patches


def header_size(p: PartLayout) -> int:
    """Pixel size of a part's header text."""
    return int(p.spacing * 0.85)


def part_header(p: PartLayout) -> str:
    """The header of a part's panel: its name, its strings' notes, its capo."""
    names = [midi_to_note_name(s)[:-1] for s in p.tuning.strings]
    capo = f"  capo {p.tuning.capo}" if p.tuning.capo else ""
    return f"{p.name.upper()}   {' '.join(names)}{capo}"


def header_end(p: PartLayout, layout: Layout) -> int:
    """x where a part's header text ends (the hud writes chord names right of it)."""
    with _TEXT_LOCK:
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        b = probe.textbbox((0, 0), part_header(p), font=font(header_size(p)))
    return p.header[0] + layout.margin + int(b[2]) + layout.margin


def _draw_part(draw: ImageDraw.ImageDraw, p: PartLayout, layout: Layout, style: Style) -> None:
    x0, y0, x1, y1 = p.panel
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=style.panel)
    hf = font(header_size(p))
    names = [midi_to_note_name(s)[:-1] for s in p.tuning.strings]
    draw.text((p.header[0] + layout.margin, p.header[1]), part_header(p), font=hf, fill=style.text)
    # Staff: one line per string, the highest string on top, names at the left.
    sx0, sy0, sx1, sy1 = p.staff
    lw = max(1, p.spacing // 14)
    nf = font(int(p.spacing * 0.7))
    for s, y in enumerate(p.string_y):
        draw.line((sx0, y, sx1 - 1, y), fill=style.line, width=lw)
        label = names[s]
        b = _text_size(draw, label, nf)
        draw.text((sx0 - (b[2] - b[0]) - p.spacing // 3, y - (b[3] + b[1]) // 2), label, font=nf, fill=style.line)
    draw.line((sx0, p.string_y[-1], sx0, p.string_y[0]), fill=style.line, width=max(2, lw * 2))
    # Fretboard: wood, nut, fret wires, inlays, strings thicker towards the bass.
    bx0, by0, bx1, by1 = p.board
    draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=style.board)
    mid = (by0 + by1) // 2
    dot = max(1, p.board_spacing // 4)
    inlay = mix_color(style.board, style.text, 0.35)
    for f in range(1, p.frets_shown + 1):
        cx = int(round(bx0 + (f + 0.5) * p.cell_width))
        if f in INLAYS:
            draw.ellipse((cx - dot, mid - dot, cx + dot, mid + dot), fill=inlay)
        elif f in DOUBLE_INLAYS:
            q = (by1 - by0) // 4
            for yy in (by0 + q, by1 - q):
                draw.ellipse((cx - dot, yy - dot, cx + dot, yy + dot), fill=inlay)
    for f in range(p.frets_shown + 1):
        fx = p.fret_x(f)
        width = max(2, p.board_spacing // 3) if f == 0 else max(1, p.board_spacing // 8)
        draw.line((fx, by0, fx, by1 - 1), fill=style.text if f == 0 else style.fret, width=width)
    n = p.strings
    for s, y in enumerate(p.board_string_y):
        width = max(1, int(round(p.board_spacing * (0.08 + 0.1 * (n - 1 - s) / max(n - 1, 1)))))
        draw.line((bx0, y, bx1 - 1, y), fill=style.line, width=width)
    ff = font(int(p.board_spacing * 0.6))
    for f in (0, *INLAYS, *DOUBLE_INLAYS):
        if f > p.frets_shown:
            continue
        label = str(f)
        b = _text_size(draw, label, ff)
        cx = int(round(bx0 + (f + 0.5) * p.cell_width))
        draw.text((cx - (b[2] + b[0]) // 2, by1 + 1 - b[1]), label, font=ff, fill=mix_color(style.text, style.panel, 0.5))


class SpriteBook:
    """Note labels and finger dots, rendered on first use and kept for the stream."""

    def __init__(self, layout: Layout, style: Style) -> None:
        self.layout = layout
        self.style = style
        self._labels: dict[tuple[int, int, int, bool, str], Sprite] = {}
        self._fingers: dict[tuple[int, int], Sprite] = {}

    def label(self, part_index: int, string: int, fret: int, lit: bool, technique: str = "") -> Sprite:
        """The tab-staff label of `fret` on `string` (lit: the note is sounding), with the
        tab letter of its technique (5h, 7p, 9/, 12b, 5~)."""
        mark = "".join(TECHNIQUE_MARKS.get(t, "") for t in technique.split(",") if t)
        key = (part_index, string, fret, lit, mark)
        sprite = self._labels.get(key)
        if sprite is None:
            p = self.layout.parts[part_index]
            fill = self.style.highlight if lit else self.style.label_color(string, p.strings)
            ink = self.style.note_text
            height = max(6, int(round(p.spacing * (1.05 if lit else 0.9))))
            sprite = _pill(f"{fret}{mark}", height, fill, ink, outline=self.style.text if lit else None)
            self._labels[key] = sprite
        return sprite

    def finger(self, part_index: int, fret: int) -> Sprite:
        """The dot drawn on a fretboard cell while its note sounds."""
        key = (part_index, fret)
        sprite = self._fingers.get(key)
        if sprite is None:
            p = self.layout.parts[part_index]
            size = max(4, int(min(p.board_spacing, p.cell_width) * 0.95))
            sprite = _dot(str(fret), size, self.style.highlight, self.style.note_text)
            self._fingers[key] = sprite
        return sprite

    def sustain_color(self, part_index: int, string: int) -> RGB:
        """Colour of the bar that shows how long a note rings."""
        p = self.layout.parts[part_index]
        return mix_color(self.style.label_color(string, p.strings), self.style.panel, 0.45)


def _pill(text: str, height: int, fill: RGB, ink: RGB, outline: RGB | None = None) -> Sprite:
    with _TEXT_LOCK:
        return _draw_pill(text, height, fill, ink, outline)


def _draw_pill(text: str, height: int, fill: RGB, ink: RGB, outline: RGB | None) -> Sprite:
    f = font(int(height * 0.78))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    b = probe.textbbox((0, 0), text, font=f)
    width = int(max(height, (b[2] - b[0]) + height // 2))
    img = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle(
        (0, 0, width - 1, height - 1), radius=height // 3, fill=fill + (255,),
        outline=(outline + (255,)) if outline else None, width=max(1, height // 12),
    )
    draw.text(((width - (b[2] + b[0])) / 2, (height - (b[3] + b[1])) / 2), text, font=f, fill=ink + (255,))
    return Sprite.from_rgba(np.asarray(img))


def _dot(text: str, size: int, fill: RGB, ink: RGB) -> Sprite:
    with _TEXT_LOCK:
        return _draw_dot(text, size, fill, ink)


def _draw_dot(text: str, size: int, fill: RGB, ink: RGB) -> Sprite:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((0, 0, size - 1, size - 1), fill=fill + (255,))
    if size >= 10:
        f = font(int(size * 0.6))
        b = draw.textbbox((0, 0), text, font=f)
        draw.text(((size - (b[2] + b[0])) / 2, (size - (b[3] + b[1])) / 2), text, font=f, fill=ink + (255,))
    return Sprite.from_rgba(np.asarray(img))
