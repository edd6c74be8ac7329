"""A render stream's validated settings, built from its RenderConfig message."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tabagent.errors import BadConfig
from tabagent.v1 import video_pb2
from video_svc.config import VideoConfig
from video_svc.styles import Style, get_style

DEFAULT_WIDTH = 1280
DEFAULT_HEIGHT = 720
DEFAULT_FPS = 30
MIN_WIDTH = 160
MIN_HEIGHT = 90
MAX_FPS = 60
MAX_PARTS = 6
_PART_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")


@dataclass(frozen=True)
class RenderSpec:
    """What one stream asked for, with defaults filled in and limits checked."""

    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: int = DEFAULT_FPS
    style: Style = get_style("")
    parts: tuple[str, ...] = ()          # empty: every part that arrives before the first frame
    title: str = ""
    diffusion: bool = False
    expected_seconds: float = 0.0
    song_id: str = ""
    seed: int = 0

    @classmethod
    def from_proto(cls, msg: video_pb2.RenderConfig, limits: VideoConfig | None = None) -> RenderSpec:
        """Validate a RenderConfig.

        Args:
            msg: the stream's first message.
            limits: the service's size limits (defaults when None).

        Returns:
            The spec.

        Raises:
            BadConfig: with a message naming the field and the accepted range.
        """
        limits = limits or VideoConfig()
        width = msg.width or DEFAULT_WIDTH
        height = msg.height or DEFAULT_HEIGHT
        fps = msg.fps or DEFAULT_FPS
        if not MIN_WIDTH <= width <= limits.max_width or not MIN_HEIGHT <= height <= limits.max_height:
            raise BadConfig(
                f"video size {width}x{height} is outside {MIN_WIDTH}x{MIN_HEIGHT} .. "
                f"{limits.max_width}x{limits.max_height}"
            )
        if width % 2 or height % 2:
            raise BadConfig(f"video size {width}x{height}: width and height must be even (H.264 4:2:0)")
        if not 1 <= fps <= MAX_FPS:
            raise BadConfig(f"fps {fps} is outside 1..{MAX_FPS}")
        style = get_style(msg.style)
        parts: list[str] = []
        for name in msg.parts:
            if not _PART_NAME.fullmatch(name):
                raise BadConfig(f"part name {name!r}: use letters, digits, '_' or '-' (e.g. guitar, bass)")
            if name not in parts:
                parts.append(name)
        if len(parts) > MAX_PARTS:
            raise BadConfig(f"{len(parts)} parts asked for; at most {MAX_PARTS} fit on screen")
        if msg.expected_seconds < 0 or msg.expected_seconds > limits.max_seconds:
            raise BadConfig(
                f"expected_seconds {msg.expected_seconds:.1f} is outside 0..{limits.max_seconds:.0f}"
            )
        return cls(
            width=width,
            height=height,
            fps=fps,
            style=style,
            parts=tuple(parts),
            title=msg.title.strip()[:120],
            diffusion=msg.diffusion,
            expected_seconds=float(msg.expected_seconds),
            song_id=msg.song_id,
            seed=int(msg.seed),
        )

    @property
    def frame_seconds(self) -> float:
        """Duration of one frame."""
        return 1.0 / self.fps
