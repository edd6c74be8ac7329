"""The Note type shared by every stage, and its conversions to messages and JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tabagent.v1 import audio_pb2

TECHNIQUES = ("hammer_on", "pull_off", "slide", "bend", "let_ring", "vibrato", "palm_mute")


@dataclass
class Note:
    """One note of a part. Times in seconds; string 0 is the lowest; -1 = not fingered."""

    pitch: int
    start: float
    end: float
    velocity: float = 0.8
    string: int = -1
    fret: int = -1
    technique: str = ""
    pitch_bend: list[float] = field(default_factory=list)
    confidence: float = 0.0
    # How much the sound's energy jumps at the onset (0 = not measured): the transcriber
    # measures it for technique detection (a pick re-excites the string, a hammer-on less,
    # a bend or slide not at all). Not sent in messages nor written to result.json.
    attack: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def techniques(self) -> list[str]:
        return [t for t in self.technique.split(",") if t]

    def add_technique(self, name: str) -> None:
        if name not in self.techniques:
            self.technique = ",".join([*self.techniques, name])

    def to_proto(self) -> audio_pb2.Note:
        return audio_pb2.Note(
            pitch=int(self.pitch),
            start=float(self.start),
            end=float(self.end),
            velocity=float(self.velocity),
            string=int(self.string),
            fret=int(self.fret),
            technique=self.technique,
            pitch_bend=[float(b) for b in self.pitch_bend],
            confidence=float(self.confidence),
        )

    @classmethod
    def from_proto(cls, msg: audio_pb2.Note) -> Note:
        return cls(
            pitch=msg.pitch,
            start=msg.start,
            end=msg.end,
            velocity=msg.velocity,
            string=msg.string,
            fret=msg.fret,
            technique=msg.technique,
            pitch_bend=list(msg.pitch_bend),
            confidence=msg.confidence,
        )

    def to_dict(self, bends: bool = False) -> dict[str, Any]:
        """The result.json form (see docs/result-schema.md)."""
        d: dict[str, Any] = {
            "pitch": int(self.pitch),
            "start": round(float(self.start), 4),
            "end": round(float(self.end), 4),
            "velocity": round(float(self.velocity), 3),
            "string": int(self.string),
            "fret": int(self.fret),
            "technique": self.technique,
        }
        if bends and self.pitch_bend:
            d["pitch_bend"] = [round(float(b), 3) for b in self.pitch_bend]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Note:
        known = {k: d[k] for k in asdict(cls(0, 0.0, 0.0)) if k in d}
        return cls(**known)


def sort_notes(notes: Iterable[Note]) -> list[Note]:
    """Notes in (start, pitch) order."""
    return sorted(notes, key=lambda n: (n.start, n.pitch, n.end))
