"""Beats for the video renderer while the song streams, the bars they fall in, and the notes it may draw.

The song's rhythm (tempo, beats, bars) is known for sure only at its end, but the video
is drawn as the song goes: its beat ticks, bar numbers and chord names need beats long
before. `VideoBeats` tracks the beats of the latest WINDOW seconds of the decoded mix
every STEP seconds (so each update costs the same, however long the song) and sends the
ones older than SETTLE seconds, which later audio no longer moves, once each. At the
end, the whole song's beats fill in what is left after the last beat sent (on the
synthesised songs the streamed beats equal the whole song's to the millisecond).

`EarlyBars` decides where bars start once, from the first BARS_AFTER seconds (the whole
song if shorter), for everything: the video counts bars from it as it streams, and the
song's final rhythm (tabs, result.json) takes the same bar phase, so a bar number in the
video is that bar in the tab. On 16 synthesised songs of random tempo the phase chosen
after 30 s was right as often as (more often than) the whole song's: 11 against 8.

`Gate` holds the renderer back to what the beats cover: a note batch goes to the renderer
with its `final_until` lowered to the beats' (frames are drawn only that far), and when
the beats advance, an empty batch per part moves the parts' `final_until` on. Decoding
leads separation and transcription by many seconds, so the beats are almost always ahead
of the notes and the gate rarely waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabagent.rhythm import BeatTracker, Rhythm
from tabagent.v1 import audio_pb2, video_pb2

WINDOW = 30.0        # seconds of mix each update tracks
STEP = 2.0           # seconds of new audio between updates
SETTLE = 4.0         # beats this close to the newest audio may still move
BARS_AFTER = 30.0    # seconds heard before the bar phase is chosen


@dataclass
class EarlyBars:
    """The song's bar phase, chosen once after BARS_AFTER seconds (see the module docstring)."""

    downbeat: float | None = None   # a downbeat time all bars are counted from
    beats_per_bar: int = 4

    def update(self, tracker: BeatTracker, now: float) -> bool:
        """Choose the phase from the first window once enough is heard; True when chosen."""
        if self.downbeat is not None:
            return True
        if now < BARS_AFTER:
            return False
        rhythm = tracker.partial(WINDOW)
        if not rhythm.downbeats:
            return False
        self.downbeat = rhythm.downbeats[0]
        self.beats_per_bar = int(rhythm.beats_per_bar)
        return True

    def apply(self, rhythm: Rhythm) -> Rhythm:
        """The song's rhythm with its bars starting where this phase says (unchanged if none)."""
        if self.downbeat is None or not rhythm.beats:
            return rhythm
        per_bar = self.beats_per_bar
        first = min(range(len(rhythm.beats)), key=lambda i: abs(rhythm.beats[i] - self.downbeat))  # type: ignore[operator]
        downbeats = rhythm.beats[first % per_bar::per_bar]
        return Rhythm(rhythm.tempo, list(rhythm.beats), list(downbeats), per_bar, (per_bar, 4))


@dataclass
class VideoBeats:
    """Streams a song's beats to the renderer as they settle (see the module docstring)."""

    tracker: BeatTracker
    bars: EarlyBars = field(default_factory=EarlyBars)
    sent: list[float] = field(default_factory=list)
    final_until: float = 0.0
    beats_per_bar: int = 4
    phase: int | None = None        # index (among `sent` and later beats) of a downbeat, mod beats_per_bar
    _last_update: float = -math.inf
    _pending: list[float] = field(default_factory=list)   # settled beats held until bars are counted

    def update(self, now: float) -> video_pb2.Beats | None:
        """Track the latest window if STEP seconds of audio came since the last time.

        Args:
            now: seconds of audio pushed to the tracker so far.

        Returns:
            The beats newly settled (with their downbeats), or None.
        """
        if now - self._last_update < STEP or not self.bars.update(self.tracker, now):
            return None
        self._last_update = now
        rhythm = self.tracker.partial(WINDOW)
        if len(rhythm.beats) < 4:
            return None
        return self._take(rhythm, now - SETTLE)

    def finish(self, rhythm: Rhythm | None) -> video_pb2.Beats | None:
        """The rest of the song's beats, from its whole-song rhythm, after the last sent."""
        if rhythm is None or not rhythm.beats:
            self.final_until = math.inf
            return None
        return self._take(rhythm, math.inf)

    def _take(self, rhythm: Rhythm, until: float) -> video_pb2.Beats | None:
        period = 60.0 / rhythm.tempo if rhythm.tempo > 0 else 0.5
        last = self._pending[-1] if self._pending else (self.sent[-1] if self.sent else -math.inf)
        fresh = [b for b in rhythm.beats if b <= until and b > last + 0.5 * period]
        self._pending.extend(fresh)
        self.final_until = max(self.final_until, until)
        if self.phase is None:
            bars = self.bars
            downbeats = [bars.downbeat] if bars.downbeat is not None else rhythm.downbeats
            self.beats_per_bar = max(1, bars.beats_per_bar if bars.downbeat is not None else int(rhythm.beats_per_bar))
            self.phase = _phase(self._pending, downbeats, self.beats_per_bar)
        if not self._pending:
            return None
        first = len(self.sent)
        self.sent.extend(self._pending)
        times, self._pending = self._pending, []
        downbeats = [t for i, t in enumerate(times, start=first) if (i - self.phase) % self.beats_per_bar == 0]
        return video_pb2.Beats(tempo=float(rhythm.tempo), times=times, beats_per_bar=self.beats_per_bar,
                               downbeats=downbeats)


def _phase(beats: list[float], downbeats: list[float], per_bar: int) -> int:
    """Index among `beats` of the first one that is (nearest to) a downbeat, mod `per_bar`."""
    if not beats or not downbeats:
        return 0
    best = min(range(len(beats)), key=lambda i: min(abs(beats[i] - d) for d in downbeats[:4]))
    return best % per_bar


@dataclass
class Gate:
    """What the renderer may draw: note batches held to the beats' reach (see the module docstring)."""

    parts: list[str]
    notes_final: dict[str, float] = field(default_factory=dict)
    sent_final: dict[str, float] = field(default_factory=dict)

    def notes(self, batch: audio_pb2.NoteBatch, beats_final: float) -> audio_pb2.NoteBatch:
        """The batch to send, its `final_until` no further than the beats reach."""
        self.notes_final[batch.part] = max(self.notes_final.get(batch.part, 0.0), batch.final_until)
        out = audio_pb2.NoteBatch()
        out.CopyFrom(batch)
        out.final_until = self._reach(batch.part, beats_final)
        return out

    def advance(self, beats_final: float) -> list[audio_pb2.NoteBatch]:
        """Empty batches moving each part's `final_until` on to what the beats now cover."""
        out = []
        for part in self.parts:
            before = self.sent_final.get(part, 0.0)
            reach = self._reach(part, beats_final)
            if reach > before:
                out.append(audio_pb2.NoteBatch(part=part, final_until=reach))
        return out

    def _reach(self, part: str, beats_final: float) -> float:
        reach = min(self.notes_final.get(part, 0.0), beats_final)
        reach = max(reach, self.sent_final.get(part, 0.0))
        self.sent_final[part] = reach
        return reach
