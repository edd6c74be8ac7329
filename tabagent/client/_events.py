"""Typed events yielded by the client while a song is processed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tabagent.notes import Note
from tabagent.tuning import Tuning
from tabagent.tuning import from_proto as tuning_from_proto
from tabagent.v1 import audio_pb2, gateway_pb2


@dataclass(frozen=True)
class Started:
    job_id: str


@dataclass(frozen=True)
class Progress:
    stage: str
    part: str
    done_seconds: float
    total_seconds: float


@dataclass(frozen=True)
class PartStarted:
    part: str
    tuning: Tuning
    model: audio_pb2.ModelInfo


@dataclass(frozen=True)
class Notes:
    """Notes of one part that are final; `final_until` says how far the part is done."""

    part: str
    notes: list[Note]
    out_of_range: list[Note]
    final_until: float


@dataclass(frozen=True)
class VideoFragment:
    data: bytes
    start: float
    end: float
    init: bool


@dataclass(frozen=True)
class Artifact:
    """A finished artifact; `path` is set when the client wrote it to disk."""

    name: str
    content_type: str
    size: int
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Done:
    job_id: str
    seconds: float
    wall_seconds: float
    notes: dict[str, int]
    models: list[audio_pb2.ModelInfo] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)


Event = Started | Progress | PartStarted | Notes | VideoFragment | Artifact | Done


def convert(resp: gateway_pb2.ProcessResponse) -> Event | None:
    """Turn a response message into an event (artifact pieces are assembled elsewhere)."""
    kind = resp.WhichOneof("payload")
    if kind == "started":
        return Started(resp.started.job_id)
    if kind == "progress":
        p = resp.progress
        return Progress(p.stage, p.part, p.done_seconds, p.total_seconds)
    if kind == "part":
        instrument = "bass" if resp.part.part == "bass" else "guitar"
        try:
            tuning = tuning_from_proto(resp.part.tuning, instrument)
        except Exception:  # an unusual tuning is still reported, as guitar-like
            tuning = tuning_from_proto(None, instrument)
        return PartStarted(resp.part.part, tuning, resp.part.model)
    if kind == "notes":
        b = resp.notes
        return Notes(b.part, [Note.from_proto(n) for n in b.notes],
                     [Note.from_proto(n) for n in b.out_of_range], b.final_until)
    if kind == "video":
        v = resp.video
        return VideoFragment(v.data, v.start, v.end, v.init)
    if kind == "summary":
        s = resp.summary
        return Done(s.job_id, s.seconds, s.wall_seconds, dict(s.notes), list(s.models), list(s.artifacts))
    return None
