"""Writes a song's artifacts (result.json, tabs, MIDI, GP5, MusicXML, PDF, audio) from its result.

The notated exports (tab.txt, tab.gp5, tab.musicxml, tab.pdf) are written in score time
(tabagent.scoretime): the song's tracked beats land on their constant-tempo grid, so their
bars are the song's bars and result.json's `score_beats` ties them back to the recording.
notes.mid and result.json keep the notes' own times.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import av
import numpy as np

from gateway.spec import SongResult
from tabagent import exporters
from tabagent import result as result_doc
from tabagent.chords import ChordMark, chord_marks
from tabagent.exporters.pdf import EngraverFailed, EngraverMissing, write_pdf
from tabagent.exporters.text import for_codepage
from tabagent.notes import Note
from tabagent.rhythm import Rhythm
from tabagent.scoretime import ScoreMap
from tabagent.tuning import Tuning
from tabagent.v1 import gateway_pb2

log = logging.getLogger(__name__)

PIECE_BYTES = 1024 * 1024

CONTENT_TYPES = {
    "result.json": "application/json",
    "tab.txt": "text/plain; charset=utf-8",
    "notes.mid": "audio/midi",
    "tab.gp5": "application/x-guitar-pro",
    "tab.musicxml": "application/vnd.recordare.musicxml+xml",
    "tab.pdf": "application/pdf",
    "video.mp4": "video/mp4",
}
TAB_ARTIFACTS = ("result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml", "tab.pdf")


def download_name(title: str, name: str) -> str:
    """What a browser saves an artifact as: "<title> - tab.gp5" (any script), else its name."""
    clean = "".join(ch for ch in unicodedata.normalize("NFC", title)
                    if unicodedata.category(ch)[0] != "C" and ch not in '/\\"')
    clean = " ".join(clean.split())[:120]
    return f"{clean} - {name}" if clean else name


def content_disposition(disposition: str, filename: str) -> str:
    """A Content-Disposition header for any file name (RFC 6266): an ASCII `filename` that
    every client reads, and RFC 5987's `filename*=UTF-8''...` with the real name."""
    fallback = for_codepage(filename, "ascii").replace('"', "'").replace("\\", "_").replace("?", "_")
    if fallback == filename:
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def content_type(name: str) -> str:
    if name.endswith(".flac"):   # stem-*, original.flac, no-<part>.flac
        return "audio/flac"
    return CONTENT_TYPES.get(name, "application/octet-stream")


class StemWriter:
    """Encodes one stem to FLAC as its chunks arrive."""

    def __init__(self, path: Path, sample_rate: int) -> None:
        self.container = av.open(str(path), "w", format="flac")
        self.stream = self.container.add_stream("flac", rate=sample_rate, layout="stereo")
        self.sample_rate = sample_rate
        self.pts = 0
        self.closed = False

    def write(self, samples: np.ndarray) -> None:
        frames = samples if samples.shape[1] == 2 else np.repeat(samples, 2, axis=1)
        pcm16 = (np.clip(frames, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm16, format="s16", layout="stereo")
        frame.sample_rate = self.sample_rate
        frame.pts = self.pts
        self.pts += frames.shape[0]
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.closed:
            return
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.closed = True


def parts_of(result: SongResult) -> dict[str, tuple[Tuning, list[Note]]]:
    return {name: (p.tuning, sorted(p.notes, key=lambda n: (n.start, n.pitch))) for name, p in result.parts.items()}


def score_parts(result: SongResult) -> tuple[dict[str, tuple[Tuning, list[Note]]], Rhythm, ScoreMap]:
    """The parts and rhythm in score time (what the notated exports are written from)."""
    rhythm = result.rhythm if result.rhythm is not None else Rhythm()
    score_map = ScoreMap.from_rhythm(rhythm)
    parts = {name: (tuning, score_map.notes(notes)) for name, (tuning, notes) in parts_of(result).items()}
    return parts, score_map.rhythm(rhythm), score_map


def chords_of(result: SongResult) -> list[ChordMark]:
    """The song's chord names (audio seconds), from every part's notes, bar by bar."""
    rhythm = result.rhythm if result.rhythm is not None else Rhythm()
    notes = [n for p in result.parts.values() for n in p.notes]
    return chord_marks(notes, rhythm.beats, rhythm.downbeats, end=result.seconds or None)


def result_json(result: SongResult) -> dict[str, Any]:
    """The result.json document of a finished song."""
    rhythm = result.rhythm
    parts = {
        name: result_doc.part_dict(p.spec.instrument, p.tuning, p.notes, p.out_of_range)
        for name, p in result.parts.items()
    }
    score_map = ScoreMap.from_rhythm(rhythm)
    extra = {
        "score_beats": [round(s, 4) for s in score_map.score] if not score_map.identity else list(rhythm.beats),
        "chords": [{"start": round(c.start, 4), "end": round(c.end, 4), "name": c.name} for c in chords_of(result)],
        "backing_tracks": result.backing_tracks,
    }
    return {**result_doc.build(
        job_id=result.song_id,
        duration=result.seconds,
        tempo=rhythm.tempo,
        beats=list(rhythm.beats),
        downbeats=list(rhythm.downbeats),
        time_signature=tuple(rhythm.time_signature),
        parts=parts,
        models=result.models,
        source=result.source,
        warnings=result.warnings,
        timings=result.timings,
    ), **extra}


def write_all(result: SongResult, outdir: Path, names: list[str] | None = None) -> list[Path]:
    """Write the requested artifacts (all by default) into `outdir`.

    Returns:
        The paths written, in a stable order (stems and video included when present).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    wanted = set(names or TAB_ARTIFACTS)
    parts = parts_of(result)
    scored, score_rhythm, score_map = score_parts(result)
    title = result.spec.title or "Tab Agent transcription"
    written: list[Path] = []
    pdf_ok = "tab.pdf" in wanted and _write_pdf(result, scored, score_rhythm, score_map, outdir / "tab.pdf", title)
    writers = {
        "result.json": lambda p: p.write_text(result_doc.dumps(result_json(result)), encoding="utf-8"),
        "tab.txt": lambda p: exporters.write_ascii_tab(scored, score_rhythm, p, title=title),
        "notes.mid": lambda p: exporters.write_midi(parts, result.rhythm, p, title=title),
        "tab.gp5": lambda p: exporters.write_gp5(scored, score_rhythm, p, title=title),
        "tab.musicxml": lambda p: exporters.write_musicxml(scored, score_rhythm, p, title=title),
    }
    for name in TAB_ARTIFACTS:
        if name == "tab.pdf":
            if pdf_ok:
                written.append(outdir / name)
        elif name in wanted:
            path = outdir / name
            writers[name](path)
            written.append(path)
    if result.video_path is not None and (not names or "video.mp4" in wanted):
        written.append(result.video_path)
    for _name, path in sorted(result.audio_paths.items()):
        written.append(path)
    for _stem, path in sorted(result.stem_paths.items()):
        if not names or path.name in wanted:
            written.append(path)
    return written


def _write_pdf(result: SongResult, parts: dict[str, tuple[Tuning, list[Note]]], rhythm: Rhythm,
               score_map: ScoreMap, path: Path, title: str) -> bool:
    """tab.pdf, or a logged reason and a warning in result.json when it cannot be made."""
    chords = [ChordMark(float(score_map.to_score(c.start)), float(score_map.to_score(c.end)), c.name)
              for c in chords_of(result)]
    try:
        write_pdf(parts, rhythm, path, title=title, chords=chords)
        return True
    except (EngraverMissing, EngraverFailed) as exc:
        log.warning("tab.pdf skipped: %s", exc)
        result.warnings.append(f"tab.pdf: skipped: {exc}")
        return False


def pieces(path: Path, name: str | None = None) -> Iterator[gateway_pb2.Artifact]:
    """An artifact file as messages of at most 1 MiB each."""
    name = name or path.name
    ctype = content_type(name)
    size = path.stat().st_size
    offset = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(PIECE_BYTES)
            last = offset + len(data) >= size
            yield gateway_pb2.Artifact(name=name, content_type=ctype, data=data, offset=offset, last=last)
            offset += len(data)
            if last:
                return
