"""Test mixes of guitar + bass + drums with known notes, for the chain's accuracy benchmarks.

Synthesised songs come from `evalkit.examples`; when ../shared/data is present, the
Slakh2100 track's guitar (S08) and bass (S04) stems are mixed with drums rendered from its
drum MIDI (S03) by `evalkit.synth`, in 30 s excerpts. With FluidSynth and a General MIDI
soundfont (Debian's `fluidsynth` and `fluid-soundfont-gm`, installed by
`scripts/install.sh --bench`), the same notes are also rendered with sampled GM guitars,
basses and drums: timbres the separator and the transcriber's settings were not tuned on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evalkit import synth
from evalkit.examples import make_song
from evalkit.scoring import onset_scores
from tabagent.notes import Note

SHARED = Path(os.environ.get("TABAGENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SLAKH = SHARED / "slakh2100_Track01501"
SOUNDFONT = Path(os.environ.get("TABAGENT_SOUNDFONT", "/usr/share/sounds/sf2/FluidR3_GM.sf2"))
SR = 44_100
# General MIDI programs (0-based): guitars and basses the soundfont mixes cycle through.
GM_GUITARS = {"clean": 27, "overdriven": 29, "steel": 25}
GM_BASSES = {"finger": 33, "pick": 34}
GM_DRUMS = {"kick": 36, "snare": 38, "hat": 42}


@dataclass
class Mix:
    name: str
    audio: np.ndarray            # (frames, 2) at 44.1 kHz
    truth: dict[str, list[Note]]
    stems: dict[str, np.ndarray] = field(default_factory=dict)   # isolated parts, mono

    @property
    def group(self) -> str:
        """The family of mixes this one belongs to: synth, slakh, gm-synth or gm-slakh."""
        words = self.name.split("-")
        return "-".join(words[:2]) if words[0] == "gm" else words[0]


def synthetic(count: int = 3, seconds: float = 30.0) -> Iterator[Mix]:
    """Synthesised songs at several tempos."""
    for i, bpm in enumerate((100.0, 128.0, 90.0, 115.0)[:count]):
        song = make_song(seconds, bpm=bpm, drums=True, seed=10 + i)
        yield Mix(f"synth-{int(bpm)}bpm", song.mix, song.parts,
                  {p: song.stems[p] for p in ("guitar", "bass")})


def _midi_notes(path: Path, start: float, end: float, shift: int = 0) -> list[Note]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    notes = []
    for inst in pm.instruments:
        for n in inst.notes:
            if start <= n.start < end:
                notes.append(Note(n.pitch + shift, n.start - start, min(n.end, end) - start, n.velocity / 127))
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def _drum_hits(path: Path, start: float, end: float) -> list[tuple[str, float]]:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    hits = []
    for inst in pm.instruments:
        for n in inst.notes:
            if start <= n.start < end:
                kind = "kick" if n.pitch in (35, 36) else "snare" if n.pitch in (37, 38, 39, 40) else "hat"
                hits.append((kind, n.start - start))
    return hits


def _load(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=44_100)
        out = [f.to_ndarray().reshape(-1) for frame in c.decode(audio=0) for f in resampler.resample(frame)]
    return np.concatenate(out)


def slakh(seconds: float = 30.0, starts: tuple[float, ...] = (10.0, 60.0, 120.0),
          bass_shift: int = -12) -> Iterator[Mix]:
    """30 s excerpts of the Slakh track: guitar S08 + bass S04 + drums from S03.mid.

    The bass patch sounds an octave below its MIDI notes (measured: the raw transcription
    of the isolated stem matches best at -12), so the bass truth is shifted by `bass_shift`.
    """
    if not SLAKH.is_dir():
        return
    guitar = _load(SLAKH / "stems" / "S08.flac")
    bass = _load(SLAKH / "stems" / "S04.flac")
    sr = 44_100
    for start in starts:
        a, b = int(start * sr), int((start + seconds) * sr)
        if b > min(guitar.size, bass.size):
            continue
        drums = synth.render_drums(_drum_hits(SLAKH / "MIDI" / "S03.mid", start, start + seconds), seconds)
        tracks = [guitar[a:b], bass[a:b], drums[: b - a]]
        audio = synth.mix(tracks, pans=[-0.3, 0.0, 0.1])
        truth = {
            "guitar": _midi_notes(SLAKH / "MIDI" / "S08.mid", start, start + seconds),
            "bass": _midi_notes(SLAKH / "MIDI" / "S04.mid", start, start + seconds, bass_shift),
        }
        yield Mix(f"slakh-{int(start)}s", audio, truth, {"guitar": guitar[a:b], "bass": bass[a:b]})


def have_soundfont() -> bool:
    """FluidSynth and the GM soundfont are installed."""
    return shutil.which("fluidsynth") is not None and SOUNDFONT.is_file()


def render_soundfont(notes: Sequence[tuple[int, float, float, int]], program: int, seconds: float,
                     drums: bool = False) -> np.ndarray:
    """(pitch, start, end, velocity 1-127) notes played by a GM program, mono 44.1 kHz, `seconds` long."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program, is_drum=drums)
    inst.notes = [pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e))
                  for p, s, e, v in notes]
    midi.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "part.mid", Path(tmp) / "part.wav"
        midi.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SR), "-F", str(wav), str(SOUNDFONT), str(mid)],
                       check=True, capture_output=True)
        audio = _load(wav)
    n = int(seconds * SR)
    return np.pad(audio[:n], (0, max(0, n - audio.size))).astype(np.float32)


def _at_level(audio: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return audio * (10 ** (db / 20) / max(rms, 1e-9))


def _sf_mix(name: str, guitar: np.ndarray, bass: np.ndarray, drums: np.ndarray,
            truth: dict[str, list[Note]]) -> Mix:
    g, b, d = _at_level(guitar, -18.0), _at_level(bass, -18.0), _at_level(drums, -20.0)
    return Mix(name, synth.mix([g, b, d], pans=[-0.3, 0.0, 0.1]), truth, {"guitar": g, "bass": b})


def _velocity(n: Note) -> int:
    return int(np.clip(40 + 80 * n.velocity, 1, 127))


def soundfont(count: int = 3, seconds: float = 30.0) -> Iterator[Mix]:
    """The synthesised songs' notes played by GM guitars, basses and drums (FluidSynth)."""
    if not have_soundfont():
        return
    guitars, basses = list(GM_GUITARS.items()), list(GM_BASSES.items())
    for i, bpm in enumerate((100.0, 128.0, 90.0, 115.0)[:count]):
        song = make_song(seconds, bpm=bpm, drums=True, seed=10 + i)
        gname, gprog = guitars[i % len(guitars)]
        _, bprog = basses[i % len(basses)]
        parts = {p: render_soundfont([(n.pitch, n.start, n.end, _velocity(n)) for n in song.parts[p]],
                                     prog, seconds) for p, prog in (("guitar", gprog), ("bass", bprog))}
        hits = [(GM_DRUMS[kind], t, t + 0.1, 100) for kind, t in synth.drum_hits(seconds, bpm, start=0.5)]
        drums = render_soundfont(hits, 0, seconds, drums=True)
        yield _sf_mix(f"gm-synth-{gname}-{int(bpm)}bpm", parts["guitar"], parts["bass"], drums, song.parts)


def soundfont_slakh(seconds: float = 30.0, starts: tuple[float, ...] = (10.0, 60.0, 120.0)) -> Iterator[Mix]:
    """The Slakh track's guitar, bass and drum MIDI played by GM instruments (FluidSynth).

    The bass MIDI is played an octave down, where the track's own bass patch sounds.
    """
    if not (SLAKH.is_dir() and have_soundfont()):
        return
    for start in starts:
        end = start + seconds
        guitar = _midi_notes(SLAKH / "MIDI" / "S08.mid", start, end)
        bass = _midi_notes(SLAKH / "MIDI" / "S04.mid", start, end, -12)
        drum = _midi_notes(SLAKH / "MIDI" / "S03.mid", start, end)
        yield _sf_mix(f"gm-slakh-{int(start)}s",
                      render_soundfont(_as_midi(guitar), GM_GUITARS["overdriven"], seconds),
                      render_soundfont(_as_midi(bass), GM_BASSES["finger"], seconds),
                      render_soundfont(_as_midi(drum), 0, seconds, drums=True), {"guitar": guitar, "bass": bass})


def _as_midi(notes: list[Note]) -> list[tuple[int, float, float, int]]:
    """Notes read from MIDI (velocity / 127) back as (pitch, start, end, MIDI velocity)."""
    return [(n.pitch, n.start, n.end, int(round(n.velocity * 127))) for n in notes]


async def run_chain(mixes: Sequence[tuple[str, np.ndarray, str | None]]) -> dict[str, dict[str, list[Note]]]:
    """Each (name, stereo 44.1 kHz audio, guitar tuning name or None for the default)
    through the embedded chain (a LocalChain, as `tabagent run` starts it): the notes it
    sends per part, by mix name."""
    from launcher.embedded import LocalChain
    from tabagent.client import AsyncClient, Notes, process_config

    out: dict[str, dict[str, list[Note]]] = {}
    async with LocalChain(video=False) as chain, AsyncClient(chain.gateway_addr) as client:
        for name, audio, guitar_tuning in mixes:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}.wav"
                synth.write_wav(str(path), audio)
                parts: dict[str, list[Note]] = {"guitar": [], "bass": []}
                t0 = time.monotonic()
                config = (process_config(filename=path.name, tuning={"guitar": guitar_tuning}) if guitar_tuning
                          else process_config(filename=path.name))
                async for event in client.process(path, config, Path(tmp) / "out"):
                    if isinstance(event, Notes):
                        parts[event.part].extend(event.notes)
                print(f"  {name}: chain {time.monotonic() - t0:.1f} s", file=sys.stderr)
                out[name] = parts
    return out


def onset_f1(truth: list[Note], est: list[Note], tolerance: float = 0.05) -> tuple[float, float, float]:
    """Onset-only precision, recall, F1 (evalkit.scoring: pitch within 50 cents)."""
    scores = onset_scores(truth, est, tolerance)
    return scores.precision, scores.recall, scores.f1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every mix benchmark takes: which mixes, and whether to write the doc."""
    parser.add_argument("--synthetic", type=int, default=3, help="how many synthesised songs")
    parser.add_argument("--no-slakh", action="store_true", help="skip the Slakh excerpts")
    parser.add_argument("--no-soundfont", action="store_true", help="skip the FluidSynth-rendered mixes")
    parser.add_argument("--write", action="store_true", help="put the table into docs/ACCURACY.md")


def selected(args: argparse.Namespace) -> list[Mix]:
    """The mixes `add_arguments`' options ask for (soundfont ones when FluidSynth is installed)."""
    mixes = list(synthetic(args.synthetic))
    if not args.no_slakh:
        mixes += list(slakh())
    if not args.no_soundfont:
        if not have_soundfont():
            print("no fluidsynth + GM soundfont: soundfont mixes skipped (scripts/install.sh --bench)",
                  file=sys.stderr)
        mixes += list(soundfont(args.synthetic))
        if not args.no_slakh:
            mixes += list(soundfont_slakh())
    return mixes


def command_line(script: str, args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the doc."""
    return (f".venv/bin/python bench/{script}" + (f" --synthetic {args.synthetic}" if args.synthetic != 3 else "")
            + (" --no-slakh" if args.no_slakh else "") + (" --no-soundfont" if args.no_soundfont else ""))


def mean_lines(rows: Sequence[tuple[str, str, float, float]], width: int, fmt: tuple[str, str]) -> list[str]:
    """Per family and overall means of (family, part, score a, score b) rows, as table lines.

    `fmt` formats the two means (e.g. ("{:8.3f} {:>5} {:>5}", "{:10.3f}"): the first is
    given the mean and two blanks, the second the mean).
    """
    groups = list(dict.fromkeys(g for g, *_ in rows))
    out = []
    for label, wanted in [*((f"mean {g}", {g}) for g in groups), ("MEAN (all)", set(groups))]:
        for part in ("guitar", "bass"):
            a = [x for g, p, x, _ in rows if p == part and g in wanted]
            b = [y for g, p, _, y in rows if p == part and g in wanted]
            if a:
                out.append(f"{label:<{width}} {part:<7} " + fmt[0].format(sum(a) / len(a), "", "") + " "
                           + fmt[1].format(sum(b) / len(b)))
    return out


def write_section(name: str, title: str, command: str, about: Sequence[str], lines: Sequence[str]) -> None:
    """Put a table into docs/ACCURACY.md between `<!-- name:start -->` and `<!-- name:end -->`."""
    from common import machine_line, replace_marked

    block = "\n".join([
        f"<!-- {name}:start -->", f"## {title}", "", f"Command: `{command}`  ", f"Machine: {machine_line()}", "",
        *about, "", "```", *lines, "```", f"<!-- {name}:end -->",
    ])
    doc = Path(__file__).resolve().parents[1] / "docs" / "ACCURACY.md"
    replace_marked(doc, f"<!-- {name}:start -->", f"<!-- {name}:end -->", block)
