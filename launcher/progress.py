"""Terminal progress for `tabagent run`: one bar per stage, or plain lines when piped."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tabagent.client import Done, Notes, PartStarted, Progress, Started


class StageBars:
    """Shows one progress bar per stage (decode, separate, transcribe:<part>, render)."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if enabled is None else enabled
        self.bars: dict[str, Any] = {}
        self.total = 0.0
        self.notes: dict[str, int] = {}
        self.started = time.monotonic()
        self._last_line = 0.0

    def _bar(self, key: str) -> Any:
        bar = self.bars.get(key)
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=self.total or None, desc=f"{key:<18}", unit="s", position=len(self.bars),
                       file=self.stream, leave=True, dynamic_ncols=True,
                       bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} s {postfix}")
            self.bars[key] = bar
        return bar

    def update(self, event: object) -> None:
        if isinstance(event, Started):
            self._line(f"job {event.job_id}")
        elif isinstance(event, PartStarted):
            self._line(f"{event.part}: {event.tuning.name or 'custom'} tuning "
                       f"{list(event.tuning.strings)}, capo {event.tuning.capo}, model {event.model.name}")
        elif isinstance(event, Progress):
            key = event.stage + (f":{event.part}" if event.part else "")
            if event.stage == "decode":
                self.total = max(self.total, event.done_seconds)
            if not self.tty:
                now = time.monotonic()
                if now - self._last_line > 5.0:
                    self._line(f"{key}: {event.done_seconds:.1f} s")
                    self._last_line = now
                return
            bar = self._bar(key)
            total = event.total_seconds or self.total
            if total and (bar.total or 0) < total:
                bar.total = total
            bar.n = min(event.done_seconds, bar.total or event.done_seconds)
            bar.refresh()
        elif isinstance(event, Notes):
            self.notes[event.part] = self.notes.get(event.part, 0) + len(event.notes)
            if self.tty:
                key = f"transcribe:{event.part}"
                bar = self._bar(key)
                bar.set_postfix_str(f"{self.notes[event.part]} notes")
        elif isinstance(event, Done):
            for bar in self.bars.values():
                if bar.total:
                    bar.n = bar.total
                bar.close()
            self.bars.clear()
            counts = ", ".join(f"{k}: {v} notes" for k, v in event.notes.items())
            self._line(f"done: {event.seconds:.1f} s of audio in {event.wall_seconds:.1f} s ({counts})")

    def _line(self, text: str) -> None:
        if self.tty and self.bars:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
