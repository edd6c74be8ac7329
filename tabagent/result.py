"""The result.json document: one schema for every consumer (see docs/result-schema.md)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from tabagent.notes import Note
from tabagent.techniques import bend_amount
from tabagent.tuning import Tuning
from tabagent.v1 import audio_pb2

SCHEMA = "https://tabagent.dev/schemas/result/v1"
SCHEMA_VERSION = 1


def model_dict(role: str, info: audio_pb2.ModelInfo) -> dict[str, Any]:
    """A model entry of result.json."""
    return {
        "role": role,
        "name": info.name,
        "version": info.version,
        "backend": info.backend,
        "device": info.device,
        "fallback": bool(info.fallback),
        "message": info.message,
    }


def part_dict(instrument: str, tuning: Tuning, notes: list[Note], out_of_range: list[Note]) -> dict[str, Any]:
    """A part entry of result.json."""
    return {
        "instrument": instrument,
        "tuning": tuning.to_dict(),
        "capo": tuning.capo,
        "notes": [_note_dict(n) for n in sorted(notes, key=lambda n: (n.start, n.pitch))],
        "out_of_range": [
            {"pitch": n.pitch, "start": round(n.start, 4), "end": round(n.end, 4), "velocity": round(n.velocity, 3)}
            for n in out_of_range
        ],
    }


def _note_dict(note: Note) -> dict[str, Any]:
    """A note of result.json; a bent note also says by how much (semitones: 0.5, 1, 2 or 3)."""
    d = note.to_dict()
    if "bend" in note.techniques:
        d["bend"] = bend_amount(note)
    return d


def build(
    *,
    job_id: str,
    duration: float,
    tempo: float,
    beats: list[float],
    downbeats: list[float],
    time_signature: tuple[int, int],
    parts: Mapping[str, dict[str, Any]],
    models: Mapping[str, audio_pb2.ModelInfo],
    source: Mapping[str, Any] | None = None,
    warnings: list[str] | None = None,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Assemble the result document.

    Args:
        job_id: the song's id.
        duration: song length in seconds.
        tempo: beats per minute.
        beats: beat times in seconds.
        downbeats: bar starts in seconds.
        time_signature: (beats per bar, beat unit).
        parts: part name -> `part_dict(...)`.
        models: role -> ModelInfo ("separator", "transcriber:guitar", "video", ...).
        source: facts about the input file.
        warnings: human-readable warnings (fallbacks, clipped notes, ...).
        timings: stage -> seconds.

    Returns:
        The JSON-ready dict.
    """
    return {
        "$schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration": round(float(duration), 4),
        "tempo": round(float(tempo), 3),
        "time_signature": f"{time_signature[0]}/{time_signature[1]}",
        "beats": [round(float(b), 4) for b in beats],
        "downbeats": [round(float(b), 4) for b in downbeats],
        "parts": dict(parts),
        "models": [model_dict(role, info) for role, info in models.items()],
        "source": dict(source or {}),
        "warnings": list(warnings or []),
        "timings": {k: round(float(v), 3) for k, v in (timings or {}).items()},
    }


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def load_parts(doc: Mapping[str, Any]) -> dict[str, tuple[Tuning, list[Note]]]:
    """Read the parts of a result document back as (Tuning, notes)."""
    out: dict[str, tuple[Tuning, list[Note]]] = {}
    for name, part in doc["parts"].items():
        t = part["tuning"]
        tuning = Tuning(tuple(t["strings"]), int(part.get("capo", t.get("capo", 0))), int(t.get("max_fret", 24)),
                        t.get("name", ""), part.get("instrument", name))
        notes = []
        for d in part["notes"]:
            note = Note.from_dict(d)
            if d.get("bend") and not note.pitch_bend:
                note.pitch_bend = [0.0, float(d["bend"])]   # the size is all the exporters read
            notes.append(note)
        out[name] = (tuning, notes)
    return out
