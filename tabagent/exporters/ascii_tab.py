"""ASCII tablature laid out in bars like a tab site, and a parser that reads it back.

    Tab Agent - guitar (guitar, standard: E2 A2 D3 G3 B3 E4), capo 0
    Tempo 100 BPM, 4/4, one step = 1/8 note, 3 characters per step

       1                        2
    E4|0-----------0-----3-----|0-----2--h3-------------|
    B3|---1-----------1--------|------3b5---------------|
    G3|------------------------|------------2-----------|
    ...

Every string line starts with its open note and a bar line; one step (a grid position)
is a fixed number of characters, so a note's onset is its column: two per step, three
where a two-digit fret or a mark occurs, and a longer token runs on into the empty steps
after it rather than widening every step (`_step_chars`). Marks: `h` hammer-on, `p`
pull-off, `/` `\\` slide up/down (before the fret), `b` bend (after, with the fret the
bend sounds like: `7b9` is a full bend; a quarter-step bend is a bare `b`), `~` vibrato.
"""

from __future__ import annotations

import bisect
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tabagent.exporters.layout import Parts, choose_subdivision, end_step, legato_source, note_steps
from tabagent.notes import Note
from tabagent.rhythm import Grid, Rhythm
from tabagent.techniques import bend_amount
from tabagent.tuning import Tuning, midi_to_note_name, note_name_to_midi

logger = logging.getLogger(__name__)

PAGE_WIDTH = 80
_LINE = re.compile(r"^\s*([A-Ga-g][#b]?-?\d?)\s*\|(.*)$")
_TOKEN = re.compile(r"([hp/\\])?(\d+)(b\d*)?(~)?")
_HEADER = re.compile(r"Tempo\s+([\d.]+)\s+BPM,\s*(\d+)/(\d+),\s*one step = 1/(\d+) note,\s*(\d+) characters? per step")
_CAPO = re.compile(r"capo\s+(\d+)", re.IGNORECASE)


def _token(note: Note, source: Note | None) -> str:
    prefix = ""
    if source is not None:
        if "slide" in note.techniques:
            prefix = "/" if note.pitch > source.pitch else "\\"
        elif "hammer_on" in note.techniques:
            prefix = "h"
        elif "pull_off" in note.techniques:
            prefix = "p"
    suffix = ""
    if "bend" in note.techniques:
        amount = bend_amount(note)
        suffix = f"b{note.fret + int(amount)}" if amount >= 1 else "b"
    if "vibrato" in note.techniques:
        suffix += "~"
    return f"{prefix}{note.fret}{suffix}"


def _coarsest(parts: Parts, grid: Grid) -> int:
    """The fewest steps per beat that still place every onset exactly."""
    steps = [a for _, notes in parts.values() for a, _, _ in note_steps(notes, grid)]
    steps.append(grid.phase)
    factor = 1
    while factor < grid.subdivision and all(s % (2 * factor) == 0 for s in steps):
        factor *= 2
    return factor


def render(
    parts: Parts, rhythm: Rhythm, subdivision: int | None = None, title: str = "Tab Agent", width: int = PAGE_WIDTH
) -> str:
    """The ASCII tab of every part, as text.

    Args:
        parts: part name -> (tuning, fingered notes).
        rhythm: tempo, metre and downbeats.
        subdivision: grid steps per beat the notes are quantised to; default sixteenths
            (32nds for faster notes), shown as coarse as the onsets allow.
        title: first word of each part's header.
        width: page width in characters; bars wrap into several systems.

    Returns:
        The tab text.
    """
    fine = rhythm.grid(choose_subdivision(parts, rhythm, subdivision))
    factor = _coarsest(parts, fine)
    grid = Grid(fine.tempo, fine.subdivision // factor, fine.beats_per_bar, fine.phase // factor)
    bars = grid.bars(end_step(parts, grid))
    out = io.StringIO()
    for name, (tuning, notes) in parts.items():
        _render_part(out, name, tuning, [n for n in notes if n.string >= 0], grid, bars, title, width)
    return out.getvalue()


def _step_chars(cells: dict[tuple[int, int], str], bars: Sequence) -> int:
    """Characters per step: two, or three where a token has two characters or more (a
    two-digit fret, a marked fret), and more only where a long token (a bend, a slide
    into a fret) would otherwise run into the next note on its string or the bar line:
    a long token runs on into the empty steps after it, as on tab sites, instead of
    widening every step of the part."""
    width = 3 if any(len(t) > 1 for t in cells.values()) else 2
    ends = sorted(bar.start_step + bar.steps for bar in bars)
    by_string: dict[int, list[tuple[int, str]]] = {}
    for (string, step), token in cells.items():
        by_string.setdefault(string, []).append((step, token))
    for tokens in by_string.values():
        tokens.sort()
        for i, (step, token) in enumerate(tokens):
            k = bisect.bisect_right(ends, step)
            limit = ends[k] if k < len(ends) else step + 1
            if i + 1 < len(tokens):
                limit = min(limit, tokens[i + 1][0])
            room = max(limit - step, 1)
            width = max(width, -(-(len(token) + 1) // room))
    return width


def _render_part(out: io.StringIO, name: str, tuning: Tuning, notes: list[Note], grid: Grid, bars, title: str, width: int) -> None:
    sources = legato_source(notes)
    cells: dict[tuple[int, int], str] = {}
    for a, _, note in note_steps(notes, grid):
        cells[(note.string, a)] = _token(note, sources.get(id(note)))
    step_chars = _step_chars(cells, bars)
    names = [midi_to_note_name(p) for p in tuning.strings]
    label = max(len(n) for n in names)
    tuning_name = tuning.name or "custom"
    out.write(f"{title} - {name} ({tuning.instrument}, {tuning_name}: {' '.join(names)}), capo {tuning.capo}\n")
    out.write(
        f"Tempo {grid.tempo:g} BPM, {grid.beats_per_bar}/4, one step = 1/{4 * grid.subdivision} note, "
        f"{step_chars} characters per step\n\n"
    )
    systems: list[list] = [[]]
    used = label + 1
    for bar in bars:
        need = bar.steps * step_chars + 1
        if systems[-1] and used + need > width:
            systems.append([])
            used = label + 1
        systems[-1].append(bar)
        used += need
    for system in systems:
        numbers = " " * (label + 1)
        for bar in system:
            numbers += f"{bar.index + 1:<{bar.steps * step_chars + 1}}"
        out.write(numbers.rstrip() + "\n")
        for s in reversed(range(len(tuning.strings))):
            line = f"{names[s]:>{label}}|"
            for bar in system:
                chunk = ["-"] * (bar.steps * step_chars)
                for k in range(bar.steps):
                    token = cells.get((s, bar.start_step + k))
                    if token:
                        at = k * step_chars
                        chunk[at : at + len(token)] = token
                line += "".join(chunk[: bar.steps * step_chars]) + "|"
            out.write(line + "\n")
        out.write("\n")


def write_ascii_tab(parts: Parts, rhythm: Rhythm, path_or_str: str | Path | None = None, **kwargs) -> str:
    """Write the ASCII tab to a file (when a path is given) and return its text.

    Args:
        parts: part name -> (tuning, fingered notes).
        rhythm: tempo, metre and downbeats.
        path_or_str: where to write; None only returns the text.
        **kwargs: passed to `render` (subdivision, title, width).

    Returns:
        The tab text.
    """
    text = render(parts, rhythm, **kwargs)
    if path_or_str is not None:
        Path(path_or_str).write_text(text, encoding="utf-8")
    return text


@dataclass
class ParsedPart:
    """One part read back from ASCII tab."""

    names: list[str]                      # string labels, lowest string first
    notes: list[Note] = field(default_factory=list)
    tempo: float = 120.0
    steps_per_beat: int = 4
    capo: int = 0
    beats_per_bar: int = 4


def parse_ascii_tab(
    text: str,
    tuning: Tuning | Sequence[int] | None = None,
    tempo: float | None = None,
    steps_per_beat: int | None = None,
    step_chars: int | None = None,
    sustain: str = "next",
) -> list[ParsedPart]:
    """Read ASCII tab (this module's layout, or a tab site's with explicit step settings).

    Args:
        text: the tab; string lines look like ``E4|--0--|`` (highest string on top).
        tuning: open pitches, lowest first, for labels without octaves (``e|``, ``B|``).
        tempo: BPM when the text has no header line (default 120).
        steps_per_beat: grid steps per beat when there is no header (default 4).
        step_chars: characters per step when there is no header (default 1).
        sustain: "next" ends a note at the next onset on any string; "string" lets it
            ring until the next note on its own string (or the end).

    Returns:
        One ParsedPart per part (a header line starts a new part), notes in time order
        with pitch, string, fret, technique and times in seconds.
    """
    parts: list[ParsedPart] = []
    current: ParsedPart | None = None
    chars = step_chars or 1
    system: list[tuple[str, str]] = []
    cells: list[tuple[int, int, str]] = []  # (step, row from the top, token)
    step0 = 0
    prev_line = ""

    def flush_system() -> None:
        nonlocal current, step0
        if not system:
            return
        if current is None:
            current = ParsedPart([], tempo=tempo or 120.0, steps_per_beat=steps_per_beat or 4)
            parts.append(current)
        if not current.names:
            current.names = [n for n, _ in reversed(system)]
        bar_chunks = [body.rstrip().rstrip("|").split("|") for _, body in system]
        step = step0
        for k in range(max(len(c) for c in bar_chunks)):
            width = max(len(c[k]) if k < len(c) else 0 for c in bar_chunks)
            for row, chunks in enumerate(bar_chunks):
                chunk = chunks[k] if k < len(chunks) else ""
                for m in _TOKEN.finditer(chunk):
                    cells.append((step + m.start() // chars, row, m.group(0)))
            step += -(-width // chars)
        step0 = step
        system.clear()

    def finish_part() -> None:
        nonlocal step0
        flush_system()
        if current is not None and cells:
            _build_notes(current, cells, tuning, sustain)
        cells.clear()
        step0 = 0

    for line in text.splitlines():
        header = _HEADER.search(line)
        m = _LINE.match(line)
        if header:
            finish_part()
            capo = _CAPO.search(prev_line)
            current = ParsedPart(
                [], tempo=float(header.group(1)), steps_per_beat=int(header.group(4)) // 4,
                capo=int(capo.group(1)) if capo else 0, beats_per_bar=int(header.group(2)),
            )
            chars = int(header.group(5))
            parts.append(current)
        elif m:
            system.append((m.group(1), m.group(2)))
        else:
            flush_system()
        prev_line = line
    finish_part()
    return [p for p in parts if p.notes]


def _build_notes(
    part: ParsedPart, cells: list[tuple[int, int, str]], tuning: Tuning | Sequence[int] | None, sustain: str
) -> None:
    n_strings = len(part.names)
    if tuning is not None:
        opens = list(tuning.strings if isinstance(tuning, Tuning) else tuning)
    else:
        opens = [note_name_to_midi(n) for n in part.names]
    capo = tuning.capo if isinstance(tuning, Tuning) else part.capo
    step_s = 60.0 / part.tempo / part.steps_per_beat
    raw = []
    for step, row, token in cells:
        m = _TOKEN.fullmatch(token)
        if not m:
            continue
        string = n_strings - 1 - row
        fret = int(m.group(2))
        marks: list[str] = []
        if m.group(1) in ("h", "p"):
            marks.append("hammer_on" if m.group(1) == "h" else "pull_off")
        elif m.group(1) in ("/", "\\"):
            marks.append("slide")
        bend: list[float] = []
        if m.group(3):
            marks.append("bend")
            target = m.group(3)[1:]
            bend = [0.0, float(int(target) - fret) if target else 0.5]
        if m.group(4):
            marks.append("vibrato")
        raw.append((step, string, fret, ",".join(marks), bend))
    raw.sort()
    onsets = sorted({s for s, *_ in raw})
    last_step = onsets[-1] + 1 if onsets else 0
    notes = []
    for i, (step, string, fret, technique, bend) in enumerate(raw):
        if sustain == "string":
            later = [s for s, st, *_ in raw[i + 1 :] if st == string and s > step]
            end = later[0] if later else last_step + 1
        else:
            later = [s for s in onsets if s > step]
            end = later[0] if later else step + 1
        pitch = opens[string] + capo + fret
        notes.append(Note(pitch, step * step_s, end * step_s, string=string, fret=fret, technique=technique,
                          pitch_bend=bend))
    part.notes = sorted(notes, key=lambda n: (n.start, n.string))
