"""What the page's tab player loads: a job's tab.gp5 and the beats that tie it to the recording.

For a finished job it comes from the job's artifacts (tab.gp5, result.json). For a job
still running it is a draft built now from the chain's state: the notes that are final so
far, in score time through the beats tracked so far (BeatTracker.partial), written as a
GP5 like the final one; it grows as the song goes through the chain. Both have the same
shape (`PlayerData.to_json`), so the page has one way to load either.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.artifacts import chords_of, score_parts
from gateway.song_job import SongJob
from gateway.spec import SongResult
from tabagent import exporters
from tabagent.rhythm import BeatTracker

DRAFT_MIN_SECONDS = 2.0   # a draft is rebuilt at most this often (the page polls)


@dataclass
class PlayerData:
    """The player's view of a job (see the module docstring)."""

    final: bool
    gp5: bytes
    tempo: float
    time_signature: str
    beats: list[float]
    score_beats: list[float]
    downbeats: list[float]
    chords: list[dict[str, Any]]
    final_until: dict[str, float]
    duration: float
    backing_tracks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self, audio: dict[str, str]) -> dict[str, Any]:
        """The JSON the page reads; `audio` is source name -> URL (original, no-<part>)."""
        return {
            "final": self.final,
            "gp5": base64.b64encode(self.gp5).decode("ascii"),
            "tempo": self.tempo,
            "time_signature": self.time_signature,
            "beats": self.beats,
            "score_beats": self.score_beats,
            "downbeats": self.downbeats,
            "chords": self.chords,
            "final_until": self.final_until,
            "duration": self.duration,
            "backing_tracks": self.backing_tracks,
            "warnings": self.warnings,
            "audio": audio,
        }


def from_artifacts(folder: Path) -> PlayerData | None:
    """The player data of a finished job (None when its tab.gp5 or result.json is missing)."""
    gp5, doc_path = folder / "tab.gp5", folder / "result.json"
    if not gp5.is_file() or not doc_path.is_file():
        return None
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    beats = list(doc.get("beats", []))
    return PlayerData(
        final=True, gp5=gp5.read_bytes(), tempo=float(doc.get("tempo", 120.0)),
        time_signature=str(doc.get("time_signature", "4/4")), beats=beats,
        score_beats=list(doc.get("score_beats", beats)), downbeats=list(doc.get("downbeats", [])),
        chords=list(doc.get("chords", [])), final_until={p: float(doc["duration"]) for p in doc.get("parts", {})},
        duration=float(doc.get("duration", 0.0)), backing_tracks=dict(doc.get("backing_tracks", {})),
        warnings=list(doc.get("warnings", [])))


class DraftCache:
    """Drafts of running jobs, rebuilt only when the chain got further (and not too often)."""

    def __init__(self) -> None:
        self._drafts: dict[str, tuple[float, tuple[Any, ...], PlayerData]] = {}

    async def get(self, job_id: str, song: SongJob, final_until: dict[str, float]) -> PlayerData:
        """The draft of a running job.

        Args:
            job_id: the job.
            song: its running SongJob.
            final_until: part -> seconds up to which its notes are final (from its events).
        """
        result = song.result
        tracker = song.chain.tracker
        key = (tuple(len(p.notes) for p in result.parts.values()), tracker.samples if tracker else 0)
        cached = self._drafts.get(job_id)
        if cached is not None and (cached[1] == key or time.monotonic() - cached[0] < DRAFT_MIN_SECONDS):
            return cached[2]
        # The notes so far, copied here on the event loop (the chain appends to its lists
        # on it); the rhythm and the GP5 are worked out in a thread.
        snapshot = type(result)(result.song_id, result.spec, seconds=result.seconds,
                                warnings=list(result.warnings))
        for name, part in result.parts.items():
            snapshot.parts[name] = type(part)(part.spec, part.tuning, list(part.notes))
        draft = await asyncio.to_thread(build_draft, snapshot, tracker, final_until)
        self._drafts[job_id] = (time.monotonic(), key, draft)
        return draft

    def forget(self, job_id: str) -> None:
        self._drafts.pop(job_id, None)


def build_draft(snapshot: SongResult, tracker: BeatTracker | None, final_until: dict[str, float]) -> PlayerData:
    """A running job's player data from a copy of its result so far and its beat tracker."""
    rhythm = tracker.partial() if tracker is not None else None
    snapshot.rhythm = rhythm
    parts, score_rhythm, score_map = score_parts(snapshot)
    with tempfile.TemporaryDirectory(prefix="tabagent-draft-") as tmp:
        path = Path(tmp) / "draft.gp5"
        exporters.write_gp5(parts, score_rhythm, path, title=snapshot.spec.title or "Tab Agent transcription")
        gp5 = path.read_bytes()
    beats = [round(b, 4) for b in (rhythm.beats if rhythm else [])]
    return PlayerData(
        final=False, gp5=gp5, tempo=float(score_rhythm.tempo),
        time_signature=f"{score_rhythm.time_signature[0]}/{score_rhythm.time_signature[1]}",
        beats=beats, score_beats=[round(s, 4) for s in score_map.score] if not score_map.identity else beats,
        downbeats=[round(d, 4) for d in (rhythm.downbeats if rhythm else [])],
        chords=[{"start": round(c.start, 4), "end": round(c.end, 4), "name": c.name} for c in chords_of(snapshot)],
        final_until={name: round(final_until.get(name, 0.0), 3) for name in snapshot.parts},
        duration=round(snapshot.seconds, 3), warnings=list(snapshot.warnings))
