"""The procedural background: layered glows, ripples, grids, spotlights and stars that follow the music.

Drawn at low resolution with numpy (about 256 pixels wide) and scaled up by swscale
while converting to YUV, so it costs well under a millisecond or two per frame.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tabagent.v1 import audio_pb2
from video_svc.motion import Cue
from video_svc.styles import Style

LOW_RES_WIDTH = 256
MAX_RINGS = 3             # ripples drawn at once (each costs a full-field exp)


class Background(Protocol):
    """What the painter draws under the tab: one RGB image per frame, any size."""

    def render(self, cue: Cue) -> np.ndarray:
        """The background for the frame described by `cue`, as (h, w, 3) uint8 RGB."""
        ...


def procedural_info(message: str = "", fallback: bool = False) -> audio_pb2.ModelInfo:
    """ModelInfo of the procedural background."""
    return audio_pb2.ModelInfo(
        name="procedural",
        version="1",
        backend="numpy",
        device="cpu",
        fallback=fallback,
        message=message or "procedural audio-reactive background",
    )


def _rgb(color: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(color, dtype=np.float32) / 255.0


class ProceduralBackground:
    """Layers chosen and weighted by the style; all motion comes from the cues.

    Args:
        style: palette, layer weights and motion.
        width, height: the video's size (the background keeps its aspect).
        seed: places the stars.
    """

    def __init__(self, style: Style, width: int, height: int, seed: int = 0) -> None:
        self.style = style
        self.w = min(LOW_RES_WIDTH, width)
        self.h = max(2, int(round(self.w * height / width)))
        aspect = self.w / self.h
        xs = np.linspace(-aspect, aspect, self.w, dtype=np.float32)
        ys = np.linspace(-1.0, 1.0, self.h, dtype=np.float32)
        self.X, self.Y = np.meshgrid(xs, ys)
        top, bottom = _rgb(style.sky[0]), _rgb(style.sky[1])
        mix = ((self.Y + 1.0) / 2.0)[..., None]
        self.base = top * (1.0 - mix) + bottom * mix
        r2 = (self.X / aspect) ** 2 + self.Y**2
        self.vignette = (1.0 - 0.35 * np.clip(r2 / 2.0, 0.0, 1.0))[..., None].astype(np.float32)
        self.accent = _rgb(style.accent)
        self.accent2 = _rgb(style.accent2)
        rng = np.random.default_rng(seed)
        count = int(0.004 * self.w * self.h) + 8
        self.star_idx = rng.integers(0, self.w * self.h, size=count)
        self.star_phase = rng.uniform(0, 2 * np.pi, size=count).astype(np.float32)
        self.star_rate = rng.uniform(0.5, 2.5, size=count).astype(np.float32)
        self._down = self.Y + 1.0
        self._inv_width = 1.0 / (0.04 + 0.16 * self._down)
        self._cone_fade = np.clip(1.2 - 0.45 * self._down, 0.0, 1.0)
        self._depth = 1.0 / np.maximum(self.Y - 0.1, 0.02)
        self._grid_fade = np.clip((self.Y - 0.1) * 2.5, 0.0, 1.0)

    def render(self, cue: Cue) -> np.ndarray:
        """Draw one frame's background (low resolution RGB uint8)."""
        L = self.style.layers
        kf = cue.keyframe
        t = cue.t
        loud = cue.loudness
        beat = cue.beat
        a = math.radians(kf.total_angle)
        ca, sa = math.cos(a) / kf.total_zoom, math.sin(a) / kf.total_zoom
        ox, oy = kf.total_x / 512.0, kf.total_y / 512.0
        X = self.X * ca - self.Y * sa
        Y = self.X * sa + self.Y * ca
        # Each layer is a scalar field with a colour; one matrix product mixes them all.
        fields: list[np.ndarray] = []
        colors: list[np.ndarray] = []
        if L.glow:
            r = 0.35 + 0.3 * loud + 0.25 * beat
            amount = L.glow * (0.2 + 0.5 * beat) * (0.3 + 0.7 * loud)
            for i, color in enumerate((self.accent, self.accent2)):
                s = 1.0 + 0.6 * i
                cx = 0.7 * math.sin(0.21 * s * t + ox + i * 2.1)
                cy = 0.45 * math.cos(0.17 * s * t + oy + i * 1.3)
                d2 = (X - cx) ** 2 + (Y - cy) ** 2
                fields.append(np.exp(d2 * (-1.0 / (r * r))))
                colors.append(color * amount)
        if L.ripples:
            rings = [o for o in cue.onsets if 0.0 <= t - o < 1.5][-MAX_RINGS:]
            if rings:
                R = np.sqrt(X * X + Y * Y)
                total = np.zeros_like(R)
                for onset in rings:
                    age = t - onset
                    total += np.exp(-(((R - 1.4 * age) * (1.0 / 0.07)) ** 2)) * (1.0 - age / 1.5)
                fields.append(total)
                colors.append(self.accent2 * L.ripples)
        if L.grid:
            fields.append(self._grid(X, t, cue))
            colors.append(self.accent * (L.grid * (0.45 + 0.55 * beat)))
        if L.spotlights:
            self._spotlights(X, cue, fields, colors)
        if L.waves:
            val = np.sin(3.0 * X + 0.7 * t + 2.0 * np.sin(2.0 * Y + 0.5 * t + ox))
            k = L.waves * (0.15 + 0.35 * loud)
            band = (0.5 + 0.5 * val) * (0.6 + 0.4 * np.abs(val)) * k
            rest = (0.6 + 0.4 * np.abs(val)) * k - band
            fields += [band, rest]
            colors += [self.accent, self.accent2]
        rgb = self.base * (0.45 + 0.45 * loud + 0.1 * beat)
        if fields:
            stack = np.stack(fields, axis=-1).reshape(-1, len(fields))
            rgb = rgb + (stack @ np.stack(colors)).reshape(rgb.shape)
        if L.stars:
            flat = rgb.reshape(-1, 3)
            tw = 0.5 + 0.5 * np.sin(self.star_phase + self.star_rate * t)
            lum = (L.stars * 0.9 * (0.25 + 0.75 * cue.onset) * tw)[:, None]
            flat[self.star_idx] += lum
        if L.flash:
            rgb += self.accent * (L.flash * cue.onset * cue.onset)
        rgb *= self.vignette
        np.clip(rgb, 0.0, 1.0, out=rgb)
        rgb *= 255.0
        return rgb.astype(np.uint8)

    def _grid(self, X: np.ndarray, t: float, cue: Cue) -> np.ndarray:
        """A floor grid below the horizon, scrolling towards the viewer with the tempo."""
        depth = self._depth
        phase = t * cue.tempo / 60.0 * 0.5
        u = depth * 0.6 + phase
        du = np.abs(u - np.round(u))
        v = X * depth * 0.5
        dv = np.abs(v - np.round(v))
        inv = 1.0 / (0.06 * depth)
        lines = np.maximum(1.0 - du * inv, 1.0 - dv * (2.0 * inv))
        np.clip(lines, 0.0, 1.0, out=lines)
        return lines * self._grid_fade

    def _spotlights(self, X: np.ndarray, cue: Cue, fields: list[np.ndarray], colors: list[np.ndarray]) -> None:
        """Cones from the top of the stage, swinging through the bar."""
        amount = self.style.layers.spotlights * (0.15 + 0.45 * cue.loudness + 0.3 * cue.beat)
        aspect = self.w / self.h
        for i, x0 in enumerate((-0.7 * aspect, 0.0, 0.7 * aspect)):
            swing = 0.45 * math.sin(2 * math.pi * cue.bar_phase + 2.0 * i)
            dx = (X - x0 - self._down * math.tan(swing)) * self._inv_width
            fields.append(np.exp(-(dx * dx)) * self._cone_fade)
            colors.append((self.accent if i % 2 == 0 else self.accent2) * amount)
