"""The notes, tunings and beats a render stream has received, indexed by time."""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field

from tabagent import tuning as tunings
from tabagent.errors import InvalidInput
from tabagent.notes import Note
from tabagent.tuning import Tuning
from tabagent.v1 import audio_pb2, video_pb2

log = logging.getLogger(__name__)

MAX_STRINGS = 12
MAX_FRET = 36


def instrument_of(part: str) -> str:
    """The instrument a part name stands for: anything named like a bass is a bass."""
    return "bass" if "bass" in part.lower() else "guitar"


@dataclass
class PartTrack:
    """One part's tuning and its fingered notes, sorted by onset."""

    name: str
    tuning: Tuning
    announced: bool = False              # a PartInfo fixed the tuning
    final_until: float = 0.0
    notes: list[Note] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    longest: float = 0.0                 # longest note held, bounds the window queries

    def add(self, note: Note) -> None:
        i = bisect.bisect_right(self.starts, note.start)
        self.starts.insert(i, note.start)
        self.notes.insert(i, note)
        self.longest = max(self.longest, note.end - note.start)

    def between(self, t0: float, t1: float) -> list[Note]:
        """Notes sounding at some time in [t0, t1): onset before t1, end after t0."""
        lo = bisect.bisect_left(self.starts, t0 - self.longest - 1e-9)
        hi = bisect.bisect_left(self.starts, t1)
        return [n for n in self.notes[lo:hi] if n.end > t0]

    def prune(self, before: float) -> None:
        """Forget notes that ended before `before` (they will never be drawn again)."""
        # Every note starting before `before - longest` has ended before `before`.
        cut = bisect.bisect_left(self.starts, before - self.longest)
        if cut > 0:
            del self.notes[:cut]
            del self.starts[:cut]


class NoteTimeline:
    """Collects PartInfo, NoteBatch and Beats messages; answers time-window queries.

    When `wanted` names parts, only those are kept and the renderer waits for each; when
    it is empty, every part announced before the layout is frozen is kept.
    """

    def __init__(self, wanted: tuple[str, ...] = ()) -> None:
        self.wanted = wanted
        self.tracks: dict[str, PartTrack] = {}
        self.frozen = False
        self.beat_times: list[float] = []
        self.downbeats: list[float] = []
        self.beats_per_bar = 4
        self.tempo = 0.0
        self.first_beat: float | None = None
        self.bar_base: int | None = None     # bars of the tab before the first downbeat (see add_beats)
        self._downbeats_dropped = 0
        self._ignored: set[str] = set()

    # -- input -------------------------------------------------------------------------

    def _track(self, part: str) -> PartTrack | None:
        track = self.tracks.get(part)
        if track is not None:
            return track
        if (self.wanted and part not in self.wanted) or (self.frozen and not self.wanted):
            if part not in self._ignored:
                self._ignored.add(part)
                log.info("part %r is not shown in this video; its messages are ignored", part)
            return None
        instrument = instrument_of(part)
        track = PartTrack(part, tunings.standard(instrument))
        self.tracks[part] = track
        return track

    def set_part(self, msg: video_pb2.PartInfo) -> None:
        """Take a part's tuning (before the first frame; later changes are ignored)."""
        if not msg.part:
            raise InvalidInput("PartInfo without a part name")
        track = self._track(msg.part)
        if track is None:
            return
        tuning = tunings.from_proto(msg.tuning if msg.HasField("tuning") else None, instrument_of(msg.part))
        if self.frozen and tuning.strings != track.tuning.strings:
            log.warning("tuning of %s changed after the first frame; keeping %s", msg.part, track.tuning.name)
            return
        track.tuning = tuning
        track.announced = True
        for note in track.notes:
            self._check(track, note)

    def add_batch(self, batch: audio_pb2.NoteBatch) -> int:
        """Add a batch of final notes; returns how many were kept for drawing."""
        if not batch.part:
            raise InvalidInput("NoteBatch without a part name")
        if not math.isfinite(batch.final_until):
            raise InvalidInput(f"NoteBatch for {batch.part}: final_until is not a number")
        track = self._track(batch.part)
        if track is None:
            return 0
        kept = 0
        for msg in batch.notes:
            note = Note.from_proto(msg)
            if not (math.isfinite(note.start) and math.isfinite(note.end)) or note.end < note.start:
                raise InvalidInput(
                    f"{batch.part} note {note.pitch} has start {note.start} and end {note.end}"
                )
            if note.string < 0 or note.fret < 0:
                continue  # heard but not fingered: nothing to show on the tab
            self._check(track, note)
            track.add(note)
            kept += 1
        if batch.final_until < track.final_until:
            log.debug("%s: final_until went back from %.3f to %.3f", batch.part, track.final_until, batch.final_until)
        track.final_until = max(track.final_until, batch.final_until)
        return kept

    def _check(self, track: PartTrack, note: Note) -> None:
        strings = len(track.tuning.strings) if track.announced else MAX_STRINGS
        frets = track.tuning.frets if track.announced else MAX_FRET
        if not 0 <= note.string < strings or not 0 <= note.fret <= frets:
            raise InvalidInput(
                f"{track.name} note at {note.start:.3f} s is on string {note.string}, fret {note.fret}; "
                f"the {track.tuning.instrument} has strings 0..{strings - 1} and frets 0..{frets}"
            )

    def add_beats(self, msg: video_pb2.Beats) -> None:
        """Merge a Beats message (times may arrive over several messages)."""
        for t in msg.times:
            if math.isfinite(t) and t >= 0:
                bisect.insort(self.beat_times, float(t))
        for t in msg.downbeats:
            if math.isfinite(t) and t >= 0:
                bisect.insort(self.downbeats, float(t))
        if msg.beats_per_bar > 0:
            self.beats_per_bar = int(msg.beats_per_bar)
        if msg.tempo > 0:
            self.tempo = float(msg.tempo)
        if self.beat_times and self.first_beat is None:
            self.first_beat = self.beat_times[0]
        if self.bar_base is None and self.downbeats and self.first_beat is not None and self.tempo > 0:
            self.bar_base = _bars_before(self.first_beat, self.downbeats[0], self.tempo, self.beats_per_bar,
                                         bisect.bisect_left(self.beat_times, self.downbeats[0] - 1e-3))

    def freeze(self) -> list[tuple[str, Tuning]]:
        """Fix the parts shown (called at the first frame); returns them in display order."""
        self.frozen = True
        for track in self.tracks.values():
            if not track.announced:
                for note in track.notes:
                    self._check(track, note)
        names = list(self.wanted) if self.wanted else list(self.tracks)
        shown = []
        for name in names:
            found = self.tracks.get(name) or self._track(name)
            if found is not None:
                shown.append((name, found.tuning))
        return shown

    # -- queries -----------------------------------------------------------------------

    def known_until(self) -> float:
        """Time up to which every expected part's notes are final (-inf if none is known)."""
        names = self.wanted or tuple(self.tracks)
        if not names:
            return -math.inf
        return min(self.tracks[n].final_until if n in self.tracks else -math.inf for n in names)

    def between(self, part: str, t0: float, t1: float) -> list[Note]:
        """A part's notes sounding somewhere in [t0, t1)."""
        track = self.tracks.get(part)
        return track.between(t0, t1) if track is not None else []

    def beats_between(self, t0: float, t1: float) -> list[tuple[float, bool]]:
        """(time, starts_a_bar) for the beats in [t0, t1)."""
        lo = bisect.bisect_left(self.beat_times, t0)
        hi = bisect.bisect_left(self.beat_times, t1)
        out = []
        for i in range(lo, hi):
            t = self.beat_times[i]
            out.append((t, self._is_bar(i, t)))
        if self.downbeats:
            # Downbeats not among the beat times still get a bar line.
            for t in self.downbeats[bisect.bisect_left(self.downbeats, t0) : bisect.bisect_left(self.downbeats, t1)]:
                j = bisect.bisect_left(self.beat_times, t - 1e-3)
                if j >= len(self.beat_times) or abs(self.beat_times[j] - t) > 1e-3:
                    out.append((t, True))
        return out

    def _is_bar(self, index: int, t: float) -> bool:
        if self.downbeats:
            j = bisect.bisect_left(self.downbeats, t - 1e-3)
            return j < len(self.downbeats) and abs(self.downbeats[j] - t) <= 1e-3
        return index % self.beats_per_bar == 0

    def bar_at(self, t: float) -> tuple[int, float, float] | None:
        """(number, start, end) of the tab's bar sounding at `t` (numbered as tab.musicxml and
        tab.pdf number it: a pickup is bar 0, not shown), or None before the beats are known."""
        if self.bar_base is None:
            return None
        i = bisect.bisect_right(self.downbeats, t)
        period = 60.0 / self.tempo if self.tempo > 0 else 0.5
        length = self.beats_per_bar * period
        if i == 0:
            start = self.downbeats[0] if self.downbeats else t
            return (self.bar_base, start - length, start) if self.bar_base > 0 else None
        start = self.downbeats[i - 1]
        end = self.downbeats[i] if i < len(self.downbeats) else start + length
        return self.bar_base + self._downbeats_dropped + i, start, end

    def bar_number(self, downbeat: float) -> int | None:
        """The tab's number of the bar starting at `downbeat` (a time among the downbeats)."""
        if self.bar_base is None:
            return None
        i = bisect.bisect_left(self.downbeats, downbeat - 1e-3)
        return self.bar_base + self._downbeats_dropped + i + 1

    def last_beat(self, t: float) -> float | None:
        """The latest beat at or before `t`, if any."""
        i = bisect.bisect_right(self.beat_times, t)
        return self.beat_times[i - 1] if i else None

    def prune(self, before: float) -> None:
        """Forget notes and beats wholly before `before`; keeps memory bounded."""
        for track in self.tracks.values():
            track.prune(before)
        # Keep the beat list's indices stable enough for bar counting: drop whole bars.
        drop = bisect.bisect_left(self.beat_times, before)
        drop -= drop % self.beats_per_bar
        if drop > 0:
            del self.beat_times[:drop]
        d = bisect.bisect_left(self.downbeats, before)
        if d > 0:
            del self.downbeats[:d]
            self._downbeats_dropped += d


def _bars_before(first_beat: float, downbeat: float, tempo: float, per_bar: int, beats_before: int) -> int:
    """How many numbered bars the tab has before the one starting at the first downbeat.

    The tabs are written in score time (tabagent.scoretime): beat k of the song sits at
    first_beat + k beats of the tempo, bars are counted from time 0, and the steps before
    the first downbeat make a pickup, bar 0 (as tab.musicxml and tab.pdf number it).
    """
    period = 60.0 / tempo
    bar = per_bar * period
    step = period / 4
    at = first_beat + beats_before * period          # the first downbeat in score time
    phase = int(math.floor((at % bar) / step + 0.5)) % (per_bar * 4)
    return int(round((at - phase * step) / bar))
