"""Helpers for the gateway tests: encoded test files and a client that collects a song's events."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit import synth
from tabagent.client import Artifact, AsyncClient, Done, Notes, PartStarted, Progress, Started
from tabagent.notes import Note
from tabagent.v1 import gateway_pb2


def write_audio(path: Path, audio: np.ndarray, rate: int = 44_100) -> Path:
    """Write audio in the format `path`'s suffix names (WAV directly, others via ffmpeg)."""
    if path.suffix == ".wav":
        synth.write_wav(str(path), audio, rate)
        return path
    wav = path.with_suffix(".src.wav")
    synth.write_wav(str(wav), audio, rate)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(path)], check=True)
    wav.unlink()
    return path


@dataclass
class Collected:
    started: str = ""
    parts: dict[str, PartStarted] = field(default_factory=dict)
    notes: dict[str, list[Note]] = field(default_factory=dict)
    final_until: dict[str, list[float]] = field(default_factory=dict)
    progress: list[Progress] = field(default_factory=list)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    done: Done | None = None
    order: list[str] = field(default_factory=list)


async def collect(client: AsyncClient, path: Path, config: gateway_pb2.ProcessConfig,
                  out_dir: Path | None = None) -> Collected:
    got = Collected()
    async for event in client.process(path, config, out_dir):
        got.order.append(type(event).__name__)
        if isinstance(event, Started):
            got.started = event.job_id
        elif isinstance(event, PartStarted):
            got.parts[event.part] = event
        elif isinstance(event, Notes):
            got.notes.setdefault(event.part, []).extend(event.notes)
            got.final_until.setdefault(event.part, []).append(event.final_until)
        elif isinstance(event, Progress):
            got.progress.append(event)
        elif isinstance(event, Artifact):
            got.artifacts[event.name] = event
        elif isinstance(event, Done):
            got.done = event
    return got


def song_artifacts(*parts: str, video: bool = False) -> set[str]:
    """The artifacts a song with these parts gets by default: tabs, MIDI, result.json, the
    PDF (when MuseScore is here), the original audio and one backing track per part."""
    from tabagent.exporters.pdf import find_engraver

    names = {"result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml", "original.flac"}
    names |= {f"no-{p}.flac" for p in parts}
    if find_engraver() is not None:
        names.add("tab.pdf")
    if video:
        names.add("video.mp4")
    return names
