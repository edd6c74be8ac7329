"""Shared helpers of the performance benchmarks: the machine, test songs, timed songs, peak memory, the report.

Every `bench_*.py` script measures in one run, prints its ratios, and replaces its own
section of docs/PERFORMANCE.md (between `<!-- bench:KEY -->` markers) with the numbers,
the exact command and the machine, so the document always shows the last run of each.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shlex
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "PERFORMANCE.md"
SONGS = Path(tempfile.gettempdir()) / "tabagent-bench-songs"
RATE = 44_100
LOOP_SECONDS = 300.0  # longer songs repeat a synthesised song of this length


# -- the machine ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, cores, memory and the load average right now."""
    import psutil

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "ram_gb": psutil.virtual_memory().total / 2**30,
        "load": tuple(round(x, 2) for x in load),
        "python": platform.python_version(),
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line describing the machine (for the report)."""
    info = info or machine()
    load = ", ".join(f"{x:.2f}" for x in info["load"])
    return (f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']:.0f} GiB RAM, Python {info['python']}; "
            f"load average at start {load} (1, 5, 15 min)")


def wait_for_quiet(limit: float = 0.7, max_wait: float = 0.0) -> tuple[float, float, float]:
    """Wait up to `max_wait` seconds for the 1-min load average to drop under `limit`."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()


def command() -> str:
    """The command that is running, as typed from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(ROOT))
    except ValueError:
        script_text = str(script)
    return shlex.join([".venv/bin/python", script_text, *sys.argv[1:]])


# -- songs ---------------------------------------------------------------------------
def song(seconds: float, seed: int = 0) -> Path:
    """A synthesised guitar + bass + drums song as a 16-bit WAV, cached between runs.

    Songs up to LOOP_SECONDS are `evalkit.examples.make_song`; longer ones repeat such a
    song, written block by block (an hour is 635 MB on disk, never all in memory).
    """
    SONGS.mkdir(parents=True, exist_ok=True)
    path = SONGS / f"song-{seconds:g}s-{seed}.wav"
    if path.exists():
        return path
    from evalkit.examples import make_song

    tmp = path.with_suffix(".tmp")
    base = make_song(min(seconds, LOOP_SECONDS), seed=seed).mix
    total = int(round(seconds * RATE))
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        written = 0
        while written < total:
            block = base[: total - written]
            w.writeframes((np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
            written += block.shape[0]
    tmp.rename(path)
    return path


def read_wav(path: Path) -> np.ndarray:
    """(frames, channels) float32 of a 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return (data.reshape(-1, w.getnchannels()).astype(np.float32) / 32768.0)


# -- one song through a gateway --------------------------------------------------------
@dataclass
class SongRun:
    """What the client saw of one song: when each kind of event first came, and the end."""

    seconds: float = 0.0                 # audio seconds (from Done)
    total: float = 0.0                   # wall seconds from the call to the last event
    first: dict[str, float] = field(default_factory=dict)   # event kind -> first time
    notes: dict[str, int] = field(default_factory=dict)     # part -> notes received
    error: str = ""

    @property
    def first_tab(self) -> float:
        """Seconds until the first note batch holding fingered notes."""
        return self.first.get("tab", float("nan"))


async def process_song(address: str, path: Path, video: bool = False, out_dir: Path | None = None,
                       retries: int = 0, timeout: float | None = None) -> SongRun:
    """Send one song through the gateway at `address` and time its events.

    Args:
        address: the gateway.
        path: the audio file.
        video: ask for the play-along video.
        out_dir: where the client writes artifacts (a temporary folder when None).
        retries: client retries after a refusal (0: a refusal is an error).
        timeout: deadline for the song.
    """
    from tabagent.client import AsyncClient, Done, Notes, Progress, process_config
    from tabagent.errors import TabAgentError

    run = SongRun()
    with tempfile.TemporaryDirectory(prefix="bench-out-") as tmp:
        out = out_dir or Path(tmp)
        started = time.perf_counter()
        try:
            async with AsyncClient(address, retries=retries, timeout=timeout) as client:
                config = process_config(filename=path.name, video=video)
                async for event in client.process(path, config, out):
                    now = time.perf_counter() - started
                    kind = type(event).__name__.lower()
                    if isinstance(event, Progress):
                        kind = f"progress:{event.stage}"
                    run.first.setdefault(kind, now)
                    if isinstance(event, Notes):
                        run.notes[event.part] = run.notes.get(event.part, 0) + len(event.notes)
                        if event.notes:
                            run.first.setdefault("tab", now)
                    elif isinstance(event, Done):
                        run.seconds = event.seconds
        except TabAgentError as exc:
            run.error = f"{type(exc).__name__}: {exc.message}"
        run.total = time.perf_counter() - started
    return run


# -- memory ----------------------------------------------------------------------------
def vm_hwm(pid: int) -> int | None:
    """A process's peak resident set (VmHWM) in bytes, from /proc; None when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class RssPoller:
    """Samples the resident set of some processes every `interval` seconds in a thread.

    `peak[pid]` is the largest sample; `hwm[pid]` the kernel's exact high-water mark,
    read at each sample (it survives until the process exits).
    """

    def __init__(self, pids: Iterable[int], interval: float = 0.2) -> None:
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.interval = interval
        self.peak: dict[int, int] = dict.fromkeys(self.procs, 0)
        self.hwm: dict[int, int] = dict.fromkeys(self.procs, 0)
        self.samples: dict[int, list[tuple[float, int]]] = {pid: [] for pid in self.procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-poller", daemon=True)
        self._t0 = time.perf_counter()

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Take one sample of every process now."""
        now = time.perf_counter() - self._t0
        for pid, proc in self.procs.items():
            try:
                rss = proc.memory_info().rss
            except Exception:  # the process ended
                continue
            self.peak[pid] = max(self.peak[pid], rss)
            self.hwm[pid] = max(self.hwm[pid], vm_hwm(pid) or 0)
            series = self.samples[pid]
            if not series or now - series[-1][0] >= 1.0:
                series.append((now, rss))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


# -- the report ----------------------------------------------------------------------------
HEADER = """# Performance

Measured by the scripts in `bench/` (benchmarks, not tests): each runs in one go, prints its
ratios and rewrites its own section below with the numbers, the exact command and the
machine. `make bench` runs the quick version of every one (`bench/run_all.py`); the long
runs are listed with each section.

"""


def write_section(key: str, text: str, doc: Path = DOC, long: bool = False) -> None:
    """Replace (or append) the section `key` of docs/PERFORMANCE.md with `text`.

    A long run (`long`) has its own section, `key`-long, with "(long run)" after its
    heading, so the quick runs of `make bench` leave it in place.
    """
    if long:
        key += "-long"
        head, _, rest = text.strip().partition("\n")
        text = f"{head} (long run)\n{rest}"
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    replace_marked(doc, start, end, f"{start}\n{text.strip()}\n{end}", HEADER)


def replace_marked(doc: Path, start: str, end: str, block: str, default: str = "") -> None:
    """Replace the part of `doc` from marker `start` to marker `end` with `block`.

    `block` includes both markers. Appended when the markers are absent; `default` is
    the document's text when the file does not exist yet.
    """
    doc.parent.mkdir(parents=True, exist_ok=True)
    current = doc.read_text(encoding="utf-8") if doc.exists() else default
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    doc.write_text(updated, encoding="utf-8")


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run(coro: Any) -> Any:
    """asyncio.run, for the scripts' main functions."""
    return asyncio.run(coro)
