"""What one song's processing asks for (parsed from ProcessConfig) and what it produced."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabagent import options
from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.notes import Note
from tabagent.tuning import Tuning
from tabagent.v1 import audio_pb2, gateway_pb2, video_pb2

PART_INSTRUMENTS = options.PART_INSTRUMENTS
MAX_PARTS = 4


@dataclass
class PartSpec:
    name: str
    instrument: str
    tuning: Tuning
    onset_threshold: float = 0.0
    frame_threshold: float = 0.0


@dataclass
class SongSpec:
    parts: list[PartSpec]
    separator_model: str = ""
    video: bool = False
    render: video_pb2.RenderConfig | None = None
    return_stems: bool = False
    artifacts: list[str] = field(default_factory=list)
    title: str = ""
    filename: str = ""
    song_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def spec_from_config(cfg: gateway_pb2.ProcessConfig, song_id: str | None = None) -> SongSpec:
    """Validate a ProcessConfig into a SongSpec.

    Raises:
        BadConfig: unknown instruments, duplicate parts, impossible tunings, an unknown
            video style (checked here, before any model work).
    """
    parts: list[PartSpec] = []
    configs = list(cfg.parts) or [gateway_pb2.PartConfig(name="guitar"), gateway_pb2.PartConfig(name="bass")]
    if len(configs) > MAX_PARTS:
        raise BadConfig(f"at most {MAX_PARTS} parts per song, got {len(configs)}")
    seen: set[str] = set()
    for pc in configs:
        name = pc.name or pc.instrument
        instrument = pc.instrument or PART_INSTRUMENTS.get(name, "")
        if instrument not in tunings.TUNINGS:
            raise BadConfig(
                f"part {name!r}: unknown instrument {instrument!r}; use one of {', '.join(tunings.INSTRUMENTS)}"
            )
        if not name or name in seen:
            raise BadConfig(f"part names must be unique and non-empty, got {name!r}")
        seen.add(name)
        for label, value in (("onset_threshold", pc.onset_threshold), ("frame_threshold", pc.frame_threshold)):
            if not 0.0 <= value < 1.0:
                raise BadConfig(f"part {name!r}: {label} must be in [0, 1), got {value}")
        parts.append(PartSpec(name, instrument, tunings.from_proto(pc.tuning if pc.HasField("tuning") else None, instrument),
                              pc.onset_threshold, pc.frame_threshold))
    names = [p.name for p in parts]
    if "guitar" in names and any(n in names for n in options.SPLIT_PARTS):
        options.check_parts(names)  # lead/rhythm replace guitar: the same one-line refusal
    if cfg.HasField("video_config"):
        options.check_style(cfg.video_config.style)
    return SongSpec(
        parts=parts,
        separator_model=cfg.separator_model,
        video=cfg.video,
        render=cfg.video_config if cfg.HasField("video_config") else None,
        return_stems=cfg.return_stems,
        artifacts=list(cfg.artifacts),
        title=cfg.title or Path(cfg.filename).stem if (cfg.title or cfg.filename) else "",
        filename=cfg.filename,
        song_id=song_id or uuid.uuid4().hex,
    )


@dataclass
class PartResult:
    spec: PartSpec
    tuning: Tuning
    notes: list[Note] = field(default_factory=list)
    out_of_range: list[Note] = field(default_factory=list)
    model: audio_pb2.ModelInfo | None = None


@dataclass
class SongResult:
    """Everything the chain found for one song; artifacts are written from it."""

    song_id: str
    spec: SongSpec
    seconds: float = 0.0
    wall_seconds: float = 0.0
    parts: dict[str, PartResult] = field(default_factory=dict)
    rhythm: Any = None
    models: dict[str, audio_pb2.ModelInfo] = field(default_factory=dict)
    video_path: Path | None = None
    stem_paths: dict[str, Path] = field(default_factory=dict)
    audio_paths: dict[str, Path] = field(default_factory=dict)   # original.flac, no-<part>.flac
    backing_tracks: dict[str, dict[str, Any]] = field(default_factory=dict)  # result.json's
    source: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)   # per service: streams started again
