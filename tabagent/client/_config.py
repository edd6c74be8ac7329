"""Building the ProcessConfig a client sends first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabagent import tuning as tunings
from tabagent.v1 import gateway_pb2, video_pb2

FILE_PIECE = 512 * 1024  # bytes per message, far below gRPC's 4 MB limit


def process_config(
    filename: str = "",
    parts: Sequence[str] = ("guitar", "bass"),
    tuning: dict[str, str] | None = None,
    capo: dict[str, int] | None = None,
    video: bool = False,
    style: str = "",
    size: tuple[int, int] | None = None,
    fps: int = 0,
    separator_model: str = "",
    return_stems: bool = False,
    title: str = "",
) -> gateway_pb2.ProcessConfig:
    """The config message for `Gateway.Process`.

    Args:
        filename: shown in logs only; the content decides the format.
        parts: parts to transcribe ("guitar", "bass").
        tuning: part -> tuning name, MIDI numbers or note names ("drop_d", "38,45,...").
        capo: part -> capo fret.
        video: also render video.mp4.
        style: video style preset.
        size: video (width, height).
        fps: video frame rate.
        separator_model: "htdemucs", "htdemucs_6s", "htdemucs_ft" or "dsp".
        return_stems: also return the separated stems as FLAC.
        title: song title for the tabs and video.
    """
    tuning = tuning or {}
    capo = capo or {}
    cfg = gateway_pb2.ProcessConfig(
        filename=Path(filename).name if filename else "",
        separator_model=separator_model,
        video=video,
        return_stems=return_stems,
        title=title,
    )
    for name in parts:
        instrument = "bass" if name == "bass" else "guitar"
        t = tunings.parse(tuning.get(name, ""), instrument, capo.get(name, 0))
        cfg.parts.append(gateway_pb2.PartConfig(name=name, instrument=instrument, tuning=t.to_proto()))
    if video:
        w, h = size or (0, 0)
        cfg.video_config.CopyFrom(video_pb2.RenderConfig(width=w, height=h, fps=fps, style=style, title=title))
    return cfg
