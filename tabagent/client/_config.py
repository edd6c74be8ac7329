"""Building the ProcessConfig a client sends first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabagent import options
from tabagent.v1 import gateway_pb2, video_pb2

FILE_PIECE = 512 * 1024  # bytes per message, far below gRPC's 4 MB limit


def process_config(
    filename: str = "",
    parts: Sequence[str] = ("guitar", "bass"),
    tuning: dict[str, str] | None = None,
    capo: dict[str, int] | dict[str, str] | None = None,
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
        parts: parts to transcribe: "guitar", "bass", or "lead" and "rhythm" (the guitar
            stem split by stereo position, register and chords) instead of "guitar".
        tuning: part -> tuning name, MIDI numbers or note names ("drop_d", "38,45,...");
            a "guitar" entry applies to lead and rhythm.
        capo: part -> capo fret (0-12).
        video: also render video.mp4.
        style: video style preset (checked even without video).
        size: video (width, height).
        fps: video frame rate.
        separator_model: "auto" (default: htdemucs_6s when available), "htdemucs_6s",
            "htdemucs", "htdemucs_ft" or "dsp".
        return_stems: also return the separated stems as FLAC.
        title: song title for the tabs and video.

    Raises:
        tabagent.errors.BadConfig: an unknown part, tuning or style, or a bad capo, in
            one line listing what is accepted (`tabagent.options`), before anything is sent.
    """
    checked = options.check_song_options(parts, tuning, capo, style)
    cfg = gateway_pb2.ProcessConfig(
        filename=Path(filename).name if filename else "",
        separator_model=separator_model,
        video=video,
        return_stems=return_stems,
        title=title,
    )
    for name in checked.parts:
        cfg.parts.append(gateway_pb2.PartConfig(name=name, instrument=options.instrument_of(name),
                                                tuning=checked.tunings[name].to_proto()))
    if video:
        w, h = size or (0, 0)
        cfg.video_config.CopyFrom(video_pb2.RenderConfig(width=w, height=h, fps=fps, style=style, title=title))
    return cfg
