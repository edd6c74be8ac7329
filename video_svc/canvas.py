"""A YUV 4:2:0 frame buffer (BT.709, limited range) with the few fast primitives the painter needs.

Frames are composed directly in the encoder's pixel format, so no full-frame colour
conversion happens per frame: the background is scaled into YUV by swscale, the static
overlay and the sprites are converted once, and rectangles and sprites are plain slices.

`Scaler` keeps one swscale context per stream (creating one per frame cost as much as
the scaling) and paints straight into the frame swscale returns: the canvas's planes
are views of that VideoFrame, which goes to the encoder as it is, so no frame is copied
between the background and x264. `Canvas.from_rgb` (a fresh context and a packed copy)
is the reference path the tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

RGB = tuple[int, int, int]
COLORSPACE = "ITU709"

# BT.709 limited range: Y in 16..235, Cb/Cr in 16..240.
_M = np.array(
    [
        [0.2126, 0.7152, 0.0722],
        [-0.1146, -0.3854, 0.5],
        [0.5, -0.4542, -0.0458],
    ],
    dtype=np.float32,
)
_SCALE = np.array([219.0, 224.0, 224.0], dtype=np.float32)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """Convert (..., 3) RGB (0-255) to (..., 3) float32 BT.709 limited-range YUV."""
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    return x @ _M.T * _SCALE + _OFFSET


def yuv_of(color: RGB) -> tuple[int, int, int]:
    """One RGB colour as integer (Y, U, V)."""
    y, u, v = rgb_to_yuv(np.array(color, dtype=np.float32))
    return int(round(float(y))), int(round(float(u))), int(round(float(v)))


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Inverse of rgb_to_yuv, clipped to 0-255 (used by tests and previews)."""
    x = (np.asarray(yuv, dtype=np.float32) - _OFFSET) / _SCALE
    rgb = x @ np.linalg.inv(_M).T * 255.0
    return np.clip(rgb, 0, 255)


def even(v: float) -> int:
    """Round down to an even integer (chroma is subsampled 2x2)."""
    return int(v) & ~1


@dataclass
class Sprite:
    """A small RGBA image pre-converted to YUV 4:2:0 planes with its masks (even size)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    mask: np.ndarray       # full-resolution coverage (bool)
    cmask: np.ndarray      # chroma coverage (bool), half resolution

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @classmethod
    def from_rgba(cls, rgba: np.ndarray) -> Sprite:
        """Build from an (h, w, 4) uint8 array; odd sizes are padded transparently."""
        h, w = rgba.shape[:2]
        padded = np.zeros((h + (h & 1), w + (w & 1), 4), dtype=np.uint8)
        padded[:h, :w] = rgba
        yuv = rgb_to_yuv(padded[..., :3])
        alpha = padded[..., 3] >= 128
        # Chroma from the mean of the covered pixels of each 2x2 block.
        a4 = alpha.reshape(alpha.shape[0] // 2, 2, alpha.shape[1] // 2, 2)
        cnt = a4.sum(axis=(1, 3))
        uv = (yuv[..., 1:] * alpha[..., None]).reshape(cnt.shape[0], 2, cnt.shape[1], 2, 2).sum(axis=(1, 3))
        uv = uv / np.maximum(cnt, 1)[..., None]
        return cls(
            y=np.clip(np.rint(yuv[..., 0]), 0, 255).astype(np.uint8),
            u=np.clip(np.rint(uv[..., 0]), 0, 255).astype(np.uint8),
            v=np.clip(np.rint(uv[..., 1]), 0, 255).astype(np.uint8),
            mask=alpha,
            cmask=cnt >= 2,
        )


class Canvas:
    """One frame's Y, U and V planes: over a single (h*3/2, w) buffer (PyAV's yuv420p
    layout), or over the planes of a VideoFrame (`Canvas.wrap`)."""

    def __init__(self, width: int, height: int, buffer: np.ndarray | None = None) -> None:
        self.width = width
        self.height = height
        if buffer is None:
            buffer = np.zeros((height * 3 // 2, width), dtype=np.uint8)
        self._buffer: np.ndarray | None = buffer
        self._frame: av.VideoFrame | None = None
        # The planes follow each other without row alignment (U and V may share a row).
        flat = buffer.reshape(-1)
        luma, chroma = width * height, (width // 2) * (height // 2)
        self.y = flat[:luma].reshape(height, width)
        self.u = flat[luma : luma + chroma].reshape(height // 2, width // 2)
        self.v = flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2)

    @classmethod
    def wrap(cls, frame: av.VideoFrame) -> Canvas:
        """A canvas drawing straight into a yuv420p VideoFrame's planes (no copy)."""
        if frame.format.name != "yuv420p":
            raise ValueError(f"a canvas wraps yuv420p frames, not {frame.format.name}")
        canvas = cls.__new__(cls)
        canvas.width, canvas.height = frame.width, frame.height
        canvas._buffer = None
        canvas._frame = frame
        canvas.y, canvas.u, canvas.v = (_plane_view(p) for p in frame.planes[:3])
        return canvas

    @property
    def buffer(self) -> np.ndarray:
        """The frame as one packed (h*3/2, w) yuv420p array (a copy for a wrapped frame)."""
        if self._buffer is not None:
            return self._buffer
        return np.concatenate([self.y.reshape(-1), self.u.reshape(-1), self.v.reshape(-1)]).reshape(
            self.height * 3 // 2, self.width
        )

    @classmethod
    def from_rgb(cls, rgb: np.ndarray, width: int, height: int) -> Canvas:
        """Scale an RGB image of any size to the canvas size, converting to YUV (swscale)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out = frame.reformat(
            width=width, height=height, format="yuv420p", dst_colorspace=COLORSPACE, interpolation="BILINEAR"
        )
        return cls(width, height, out.to_ndarray())

    def to_frame(self) -> av.VideoFrame:
        """The canvas as a VideoFrame: the wrapped frame itself, else a copy of the buffer."""
        if self._frame is not None:
            return self._frame
        return av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")

    def fill(self, x0: int, y0: int, x1: int, y1: int, yuv: tuple[int, int, int]) -> None:
        """Fill a rectangle (clipped to the canvas) with a solid colour."""
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        self.y[y0:y1, x0:x1] = yuv[0]
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2
        self.u[cy0:cy1, cx0:cx1] = yuv[1]
        self.v[cy0:cy1, cx0:cx1] = yuv[2]

    def blit(self, sprite: Sprite, x: int, y: int, clip_x: tuple[int, int] | None = None) -> None:
        """Draw a sprite with its top-left corner at (x, y), rounded down to even.

        Clipped to the canvas and, when given, to the columns [clip_x[0], clip_x[1]).
        """
        x, y = even(x), even(y)
        h, w = sprite.height, sprite.width
        left, right = (0, self.width) if clip_x is None else (max(0, clip_x[0]), min(self.width, clip_x[1]))
        sx0, sy0 = max(0, ((left + 1) & ~1) - x), max(0, -y)
        sx1, sy1 = min(w, (right & ~1) - x), min(h, self.height - y)
        if sx1 <= sx0 or sy1 <= sy0:
            return
        m = sprite.mask[sy0:sy1, sx0:sx1]
        np.copyto(self.y[y + sy0 : y + sy1, x + sx0 : x + sx1], sprite.y[sy0:sy1, sx0:sx1], where=m)
        c = (slice((y + sy0) // 2, (y + sy1) // 2), slice((x + sx0) // 2, (x + sx1) // 2))
        cs = (slice(sy0 // 2, sy1 // 2), slice(sx0 // 2, sx1 // 2))
        cm = sprite.cmask[cs]
        np.copyto(self.u[c], sprite.u[cs], where=cm)
        np.copyto(self.v[c], sprite.v[cs], where=cm)


def _plane_view(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable (height, width) uint8 view of one plane of a VideoFrame."""
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


class Scaler:
    """Scales each frame's RGB background into a new yuv420p canvas with one kept
    swscale context (the same bilinear BT.709 conversion as `Canvas.from_rgb`, which
    the tests hold it to, pixel for pixel).

    Not thread-safe: one per stream, called for one frame at a time.
    """

    def __init__(self, width: int, height: int) -> None:
        from av.video.reformatter import Colorspace, Interpolation, VideoReformatter

        self.width = width
        self.height = height
        self._reformatter = VideoReformatter()
        self._colorspace = Colorspace[COLORSPACE]
        self._interpolation = Interpolation.BILINEAR

    def canvas(self, rgb: np.ndarray) -> Canvas:
        """A canvas of the video's size holding `rgb` (any size) scaled and converted."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out = self._reformatter.reformat(
            frame, width=self.width, height=self.height, format="yuv420p", dst_colorspace=self._colorspace,
            interpolation=self._interpolation, threads=1,
        )
        return Canvas.wrap(out)


@dataclass
class OverlayPatch:
    """A rectangle of the static overlay, premultiplied for a 3/4-opaque blend.

    `canvas = canvas / 4 + patch` keeps a quarter of the background visible through the
    panel, in two integer operations per plane.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def from_rgb(cls, rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> OverlayPatch:
        """Cut the even-aligned rectangle [x0, x1) x [y0, y1) out of a full-frame RGB overlay."""
        x0, y0, x1, y1 = even(x0), even(y0), even(x1 + 1), even(y1 + 1)
        yuv = rgb_to_yuv(rgb[y0:y1, x0:x1])
        h, w = yuv.shape[:2]
        uv = yuv[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
        pre = lambda a: np.clip(np.rint(a * 0.75), 0, 191).astype(np.uint8)  # noqa: E731
        return cls(x0, y0, x1, y1, pre(yuv[..., 0]), pre(uv[..., 0]), pre(uv[..., 1]))

    def apply(self, canvas: Canvas) -> None:
        """Blend the patch over the canvas in place."""
        for plane, patch, s in ((canvas.y, self.y, 1), (canvas.u, self.u, 2), (canvas.v, self.v, 2)):
            region = plane[self.y0 // s : self.y1 // s, self.x0 // s : self.x1 // s]
            np.right_shift(region, 2, out=region)
            np.add(region, patch, out=region)
