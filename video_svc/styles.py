"""Style presets of the play-along video: palettes, background layers, motion and prompts."""

from __future__ import annotations

from dataclasses import dataclass, field

from tabagent.errors import BadConfig

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Layers:
    """Weights (0 = off) of the procedural background's layers."""

    glow: float = 0.6          # soft blobs of the accent colours, pulsing on beats
    ripples: float = 0.0       # rings expanding from each onset
    grid: float = 0.0          # a perspective floor grid scrolling with the tempo
    spotlights: float = 0.0    # stage cones swinging with the beat
    stars: float = 0.0         # twinkling points lit by onsets
    waves: float = 0.0         # flowing interference bands
    flash: float = 0.0         # whole-frame flashes on strong onsets


@dataclass(frozen=True)
class Motion:
    """How strongly the audio moves the camera (Deforum-style keyframes)."""

    zoom: float = 0.02         # extra zoom per frame at a beat (decays between beats)
    rotate: float = 0.3        # degrees per frame at full loudness
    drift: float = 1.0         # translation, pixels per frame at full loudness (512 px wide)
    sway: float = 0.25         # how much the rotation swings back and forth with the bar


@dataclass(frozen=True)
class Style:
    """A named look: colours of every element, background layers, motion, and a prompt."""

    name: str
    sky: tuple[RGB, RGB]                 # background gradient, top and bottom
    accent: RGB
    accent2: RGB
    highlight: RGB                       # sounding notes, the fingers on the fretboard
    panel: RGB                           # fill behind the tab staff (blended over the background)
    board: RGB                           # fretboard wood
    line: RGB                            # staff lines and strings
    fret: RGB                            # fret wires, beat ticks
    text: RGB
    note: RGB                            # fill of upcoming note labels
    note_text: RGB
    string_colors: tuple[RGB, ...] = ()  # per-string label fills (lowest string first); empty = `note`
    layers: Layers = field(default_factory=Layers)
    motion: Motion = field(default_factory=Motion)
    prompt: str = ""
    negative_prompt: str = "text, letters, watermark, signature, blurry, low quality"

    def label_color(self, string: int, strings: int) -> RGB:
        """Fill of a note label on `string` (0 = lowest) of an instrument with `strings` strings."""
        if not self.string_colors:
            return self.note
        # Map the highest string to the last colour so 4- and 6-string parts look alike.
        index = len(self.string_colors) - strings + string
        return self.string_colors[min(max(index, 0), len(self.string_colors) - 1)]


STYLES: dict[str, Style] = {
    "guitar_hero": Style(
        name="guitar_hero",
        sky=((12, 6, 40), (40, 10, 70)),
        accent=(255, 60, 180),
        accent2=(40, 180, 255),
        highlight=(255, 250, 120),
        panel=(10, 8, 28),
        board=(34, 22, 40),
        line=(150, 150, 190),
        fret=(120, 110, 150),
        text=(240, 240, 255),
        note=(70, 200, 90),
        note_text=(10, 10, 20),
        string_colors=((255, 140, 30), (60, 110, 255), (250, 210, 40), (230, 50, 50), (60, 200, 80), (190, 90, 255)),
        layers=Layers(glow=0.7, ripples=0.4, grid=0.9, flash=0.15),
        motion=Motion(zoom=0.03, rotate=0.2, drift=1.5, sway=0.3),
        prompt="neon concert stage, laser beams, glowing highway of light, vivid colors, digital art",
    ),
    "concert": Style(
        name="concert",
        sky=((6, 6, 12), (30, 18, 14)),
        accent=(255, 180, 80),
        accent2=(80, 120, 255),
        highlight=(255, 200, 70),
        panel=(12, 10, 10),
        board=(52, 34, 22),
        line=(190, 180, 170),
        fret=(150, 140, 130),
        text=(250, 240, 225),
        note=(235, 225, 210),
        note_text=(20, 16, 12),
        layers=Layers(glow=0.5, spotlights=1.0, stars=0.25),
        motion=Motion(zoom=0.015, rotate=0.1, drift=0.8, sway=0.2),
        prompt="rock concert, stage lights, haze, crowd silhouettes, spotlights, photograph",
    ),
    "abstract": Style(
        name="abstract",
        sky=((10, 20, 40), (50, 10, 50)),
        accent=(0, 220, 200),
        accent2=(255, 110, 60),
        highlight=(120, 255, 250),
        panel=(8, 12, 24),
        board=(24, 28, 44),
        line=(170, 190, 210),
        fret=(120, 140, 170),
        text=(235, 245, 255),
        note=(230, 235, 245),
        note_text=(12, 16, 30),
        layers=Layers(glow=0.6, ripples=0.6, waves=0.9),
        motion=Motion(zoom=0.025, rotate=0.5, drift=1.2, sway=0.5),
        prompt="abstract flowing shapes, fluid colors, swirling paint, psychedelic, highly detailed",
    ),
    "acoustic": Style(
        name="acoustic",
        sky=((60, 40, 25), (150, 105, 60)),
        accent=(255, 210, 140),
        accent2=(170, 210, 140),
        highlight=(255, 140, 40),
        panel=(40, 26, 16),
        board=(96, 62, 34),
        line=(235, 215, 185),
        fret=(210, 200, 185),
        text=(255, 245, 225),
        note=(250, 240, 220),
        note_text=(50, 30, 15),
        layers=Layers(glow=0.8, stars=0.3),
        motion=Motion(zoom=0.01, rotate=0.05, drift=0.5, sway=0.15),
        prompt="warm sunlight through a wooden cabin window, acoustic guitar, cozy, golden hour, painting",
    ),
    "metal": Style(
        name="metal",
        sky=((4, 2, 2), (45, 6, 6)),
        accent=(255, 40, 20),
        accent2=(255, 150, 40),
        highlight=(255, 90, 40),
        panel=(6, 4, 4),
        board=(26, 22, 22),
        line=(170, 160, 160),
        fret=(130, 120, 120),
        text=(245, 235, 235),
        note=(215, 210, 210),
        note_text=(12, 6, 6),
        layers=Layers(glow=0.5, ripples=0.5, flash=0.6),
        motion=Motion(zoom=0.04, rotate=0.6, drift=2.0, sway=0.6),
        prompt="dark heavy metal stage, fire, smoke, red lights, dramatic, gothic, high contrast",
    ),
    "jazz": Style(
        name="jazz",
        sky=((8, 18, 34), (20, 40, 60)),
        accent=(220, 170, 70),
        accent2=(60, 170, 170),
        highlight=(255, 205, 90),
        panel=(8, 14, 24),
        board=(44, 30, 22),
        line=(190, 200, 210),
        fret=(150, 160, 170),
        text=(245, 235, 210),
        note=(235, 230, 215),
        note_text=(15, 20, 30),
        layers=Layers(glow=0.7, stars=0.5, waves=0.3),
        motion=Motion(zoom=0.012, rotate=0.08, drift=0.6, sway=0.2),
        prompt="smoky jazz club, blue and gold light, saxophone, bokeh, moody, cinematic",
    ),
    "synthwave": Style(
        name="synthwave",
        sky=((20, 4, 50), (250, 80, 120)),
        accent=(255, 60, 200),
        accent2=(60, 220, 255),
        highlight=(80, 255, 255),
        panel=(16, 6, 36),
        board=(30, 14, 54),
        line=(230, 170, 255),
        fret=(180, 120, 220),
        text=(255, 235, 255),
        note=(255, 120, 220),
        note_text=(20, 0, 30),
        layers=Layers(glow=0.6, grid=1.0, stars=0.4),
        motion=Motion(zoom=0.02, rotate=0.15, drift=1.0, sway=0.3),
        prompt="synthwave retro sunset, neon grid, palm trees, 80s outrun, purple and pink, digital art",
    ),
}

DEFAULT_STYLE = "guitar_hero"


def get_style(name: str) -> Style:
    """The preset called `name` ("" = the default).

    Raises:
        BadConfig: for an unknown name, listing the known ones.
    """
    key = (name or DEFAULT_STYLE).strip().lower().replace("-", "_").replace(" ", "_")
    style = STYLES.get(key)
    if style is None:
        raise BadConfig(f"unknown style {name!r}; known: {', '.join(STYLES)}")
    return style
