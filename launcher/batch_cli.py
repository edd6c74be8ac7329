"""`tabagent batch`: every song of a folder or a list, through the embedded chain or a gateway, resumable.

    tabagent batch songs/ --out out/ --jobs 2          # every audio file in songs/
    tabagent batch list.txt --out out/ --gateway gw:50050   # one path a line (relative to the list)

Each song's outputs go to `<out>/<name>/` (its file name without the extension; songs
with the same name get a short hash of their path). A song is written to a hidden
`.<name>.partial/` folder and renamed when it is complete, so a crash or Ctrl-C never
leaves half a song where a whole one belongs. `<out>/batch.json` records every song's
status, time and error as it ends; running the same command again skips the songs it
lists as done (when their input did not change) and runs the rest, failed ones included
(`--skip-failed` leaves those). One progress bar shows the whole batch; at the end a
table says what was done, what failed and why, and how long each took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tabagent.errors import InvalidInput, TabAgentError

AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma",
                  ".mka", ".webm")
STATE = "batch.json"
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass
class Song:
    """One song of the batch and how it went (a row of batch.json)."""

    input: str
    output: str
    status: str = PENDING
    seconds: float = 0.0            # wall time of its last run
    audio_seconds: float = 0.0
    error: str = ""
    size: int = 0                   # the input's size and mtime when it was done (a changed file runs again)
    mtime: float = 0.0
    finished_at: str = ""
    notes: dict[str, int] = field(default_factory=dict)

    def unchanged(self) -> bool:
        try:
            st = Path(self.input).stat()
        except OSError:
            return False
        return st.st_size == self.size and abs(st.st_mtime - self.mtime) < 1e-3


def find_songs(source: Path) -> list[Path]:
    """The songs a folder holds (audio files directly in it, by name) or a list names.

    Raises:
        InvalidInput: no such folder or list, a listed file is missing, or no song at all.
    """
    if source.is_dir():
        songs = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    elif source.is_file():
        songs = []
        for number, raw in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line).expanduser()
            path = path if path.is_absolute() else source.parent / path
            if not path.is_file():
                raise InvalidInput(f"{source}, line {number}: no such file {line!r}")
            songs.append(path)
    else:
        raise InvalidInput(f"{source}: no such folder or list")
    if not songs:
        raise InvalidInput(f"{source}: no songs ({', '.join(AUDIO_SUFFIXES[:5])}, ...)")
    return songs


def output_names(songs: list[Path]) -> list[str]:
    """A folder name per song: its stem, with a hash of its path where stems collide (stable across runs)."""
    stems: dict[str, int] = {}
    for p in songs:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    names = []
    for p in songs:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
        names.append(name.lstrip(".") or "song")
    return names


class BatchState:
    """batch.json: every song's row, written atomically after each change."""

    def __init__(self, out: Path, songs: list[Path]) -> None:
        self.path = out / STATE
        previous: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                previous = {row["input"]: row for row in json.loads(self.path.read_text())["songs"]}
        self.songs = []
        for path, name in zip(songs, output_names(songs), strict=True):
            key = str(path.resolve())
            row = previous.get(key)
            song = Song(**{k: v for k, v in row.items() if k in Song.__dataclass_fields__}) if row else Song(key, name)
            song.output = name
            if song.status == RUNNING:
                song.status = PENDING  # it was cut off (a crash or Ctrl-C)
            self.songs.append(song)
        self.started = time.monotonic()

    def save(self) -> None:
        counts = {s: sum(1 for x in self.songs if x.status == s) for s in (DONE, FAILED, PENDING, RUNNING)}
        doc = {"version": 1, "updated_at": _now(), "counts": counts,
               "songs": [asdict(s) for s in self.songs]}
        tmp = self.path.with_name(STATE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class BatchBar:
    """One progress bar for the whole batch: songs done, plus the running songs' fractions."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.finished = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self._bar: Any = None
        self._last_line = 0.0
        if self.tty and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="song", file=self.stream, dynamic_ncols=True,
                             bar_format="{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total} songs "
                                        "[{elapsed}<{remaining}] {postfix}")

    def progress(self, name: str, fraction: float) -> None:
        self.running[name] = max(self.running.get(name, 0.0), min(1.0, fraction))
        self._show()

    def end(self, name: str, ok: bool) -> None:
        self.running.pop(name, None)
        self.finished += 1
        self.failed += not ok
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        n = self.finished + sum(self.running.values())
        if self._bar is not None:
            self._bar.n = round(n, 2)
            self._bar.set_postfix_str(f"{self.finished - self.failed} done, {self.failed} failed, "
                                      f"{len(self.running)} running", refresh=False)
            self._bar.refresh()
        elif force or time.monotonic() - self._last_line > 10:
            self._last_line = time.monotonic()
            print(f"batch: {self.finished}/{self.total} songs ({self.failed} failed), {len(self.running)} running",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _SongProgress:
    """A song's fraction from its stage progress: the mean over the stages seen so far."""

    def __init__(self) -> None:
        self.total = 0.0
        self.stages: dict[str, float] = {}

    def update(self, stage: str, part: str, done: float, total: float) -> float:
        if stage == "decode":
            self.total = max(self.total, total, done if total else 0.0)
            return 0.0
        key = f"{stage}:{part}" if part else stage
        whole = total or self.total
        if whole:
            self.stages[key] = min(1.0, done / whole)
        return 0.95 * sum(self.stages.values()) / max(1, len(self.stages))


async def run_batch(args: argparse.Namespace) -> int:
    """Run every song not done yet; write batch.json as they end; print the summary table."""
    from tabagent.client import AsyncClient, Done, Progress, process_config

    songs = find_songs(args.source)
    parts = args.parts.split(",")
    tuning = part_values(args.tuning, "tuning")
    capo = part_values(args.capo, "capo")

    def song_config(path: str) -> Any:
        return process_config(
            filename=path, parts=parts, tuning=tuning, capo=capo, video=not args.no_video,
            style=args.style, size=args.size, fps=args.fps, separator_model=args.model,
            return_stems=args.stems, title=Path(path).stem)

    song_config(str(songs[0]))  # bad options: one clear line before any model starts
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial"):
        shutil.rmtree(stale, ignore_errors=True)  # what an interrupted run was writing
    state = BatchState(out, songs)
    todo = [s for s in state.songs
            if not (s.status == DONE and s.unchanged() and (out / s.output / "result.json").is_file())
            and not (s.status == FAILED and args.skip_failed and s.unchanged())]
    skipped = len(state.songs) - len(todo)
    for s in todo:
        s.status, s.error = PENDING, ""
    state.save()
    if not args.quiet and skipped:
        print(f"batch: {skipped} song(s) already done or skipped; {len(todo)} to run", file=sys.stderr)
    local = None
    address = args.gateway
    if todo and not address:
        from launcher.embedded import LocalChain

        local = LocalChain(video=not args.no_video, separator_model=args.model, model_dir=args.model_dir or None)
        if not args.quiet:
            print("starting the chain (loading and warming models)...", file=sys.stderr, flush=True)
        await local.start()
        address = local.gateway_addr
    bar = BatchBar(len(todo), enabled=False if args.quiet else None)
    slots = asyncio.Semaphore(max(1, args.jobs))

    async def one(client: AsyncClient, song: Song) -> None:
        async with slots:
            song.status = RUNNING
            partial = out / f".{song.output}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            started = time.monotonic()
            tracker = _SongProgress()
            config = song_config(song.input)
            try:
                async for event in client.process(Path(song.input), config, partial):
                    if isinstance(event, Progress):
                        bar.progress(song.output, tracker.update(event.stage, event.part, event.done_seconds,
                                                                 event.total_seconds))
                    elif isinstance(event, Done):
                        song.audio_seconds = round(event.seconds, 3)
                        song.notes = dict(event.notes)
                final = out / song.output
                if final.exists():
                    shutil.rmtree(final)
                partial.replace(final)
                st = Path(song.input).stat()
                song.status, song.error, song.size, song.mtime = DONE, "", st.st_size, st.st_mtime
            except TabAgentError as exc:
                song.status, song.error = FAILED, exc.message
            except OSError as exc:
                song.status, song.error = FAILED, f"{type(exc).__name__}: {exc.strerror or exc}"
            finally:
                if song.status == RUNNING:  # cancelled (Ctrl-C): it runs again next time
                    song.status = PENDING
                shutil.rmtree(partial, ignore_errors=True)
                song.seconds = round(time.monotonic() - started, 2)
                song.finished_at = _now() if song.status in (DONE, FAILED) else ""
                state.save()
                if song.status in (DONE, FAILED):
                    bar.end(song.output, song.status == DONE)

    try:
        if todo:
            async with AsyncClient(address, timeout=args.timeout) as client:
                await asyncio.gather(*(one(client, s) for s in todo))
    finally:
        bar.close()
        state.save()
        if local is not None:
            await local.stop()
    print_summary(state.songs, sys.stdout)
    print(f"batch.json: {state.path}", file=sys.stderr)
    return 1 if any(s.status == FAILED for s in state.songs) else 0


def print_summary(songs: list[Song], stream: TextIO) -> None:
    """The table of every song: status, time, audio length, notes, and why it failed."""
    width = max([4, *(len(s.output) for s in songs)])
    print(f"{'song':<{width}}  {'status':<7}  {'time s':>7}  {'audio s':>7}  notes / reason", file=stream)
    for s in songs:
        detail = s.error if s.status == FAILED else ", ".join(f"{k} {v}" for k, v in s.notes.items())
        print(f"{s.output:<{width}}  {s.status:<7}  {s.seconds:>7.1f}  {s.audio_seconds:>7.1f}  {detail}", file=stream)
    counts = {st: sum(1 for s in songs if s.status == st) for st in (DONE, FAILED, PENDING)}
    print(f"{counts[DONE]} done, {counts[FAILED]} failed, {counts[PENDING]} not run; "
          f"{sum(s.seconds for s in songs if s.status == DONE):.1f} s of work", file=stream)


def part_values(values: list[str] | None, what: str) -> dict[str, str]:
    """Repeated `PART=VALUE` options as a dict; a bare value applies to guitar (as `tabagent run`).

    Raises:
        InvalidInput: a value missing after `=`.
    """
    out: dict[str, str] = {}
    for v in values or []:
        part, sep, value = v.partition("=")
        if not sep:
            part, value = "guitar", v
        if not value.strip():
            raise InvalidInput(f"--{what} {v!r}: expected PART=VALUE")
        out[part.strip()] = value.strip()
    return out


def video_size(text: str) -> tuple[int, int]:
    """`1280x720` as (width, height), for argparse."""
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `tabagent batch`."""
    p = sub.add_parser("batch", help="turn every song of a folder or list into tabs, resumably",
                       description="Run every song of a folder (or a text file listing one path a line) through "
                                   "the chain, N at a time, into OUT/<song>/. batch.json records each song; run "
                                   "the same command again to continue after a crash or Ctrl-C.")
    p.add_argument("source", type=Path, help="a folder of audio files, or a text file with one path a line")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per song, batch.json)")
    p.add_argument("--jobs", type=int, default=2, help="songs at once (default 2)")
    p.add_argument("--gateway", default=os.environ.get("GATEWAY_ADDR", ""),
                   help="address of a running gateway (else the chain runs in this process)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry songs that failed before")
    p.add_argument("--parts", default="guitar,bass", help="parts to transcribe (default: guitar,bass)")
    p.add_argument("--tuning", action="append", metavar="PART=TUNING")
    p.add_argument("--capo", action="append", metavar="PART=FRET")
    p.add_argument("--model", default="", help="separator model")
    p.add_argument("--model-dir", default=os.environ.get("DEMUCS_MODEL_DIR", ""))
    p.add_argument("--no-video", action="store_true", help="skip video.mp4")
    p.add_argument("--style", default="guitar_hero")
    p.add_argument("--size", type=video_size, default=(1280, 720))
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--stems", action="store_true")
    p.add_argument("--timeout", type=float, default=None, help="deadline per song, seconds")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    """Run the batch; Ctrl-C stops it with what is done kept."""
    if args.jobs < 1:
        print("tabagent: --jobs must be >= 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_batch(args))
    except TabAgentError as exc:
        print(f"tabagent: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput) else 1
    except KeyboardInterrupt:
        print("tabagent: interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
