"""Audio-driven cues and Deforum-style camera keyframes (zoom, rotation, translation) per frame."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from video_svc.features import FrameFeatures
from video_svc.styles import Motion
from video_svc.timeline import NoteTimeline

BEAT_DECAY = 0.18       # seconds for a beat pulse to fall to 1/e
ONSET_MEMORY = 8        # recent onsets remembered for ripples


@dataclass(frozen=True)
class Cue:
    """Everything a background needs to react to the music at one frame."""

    index: int
    t: float                     # song time at the frame's start
    loudness: float              # smoothed, 0..1
    onset: float                 # 0..1
    beat: float                  # 1 at a beat, decaying after it
    bar_phase: float             # 0..1 through the current bar (time-based until beats arrive)
    tempo: float                 # BPM (estimated from beats, else 120)
    onsets: tuple[float, ...]    # times of recent onsets, newest last
    keyframe: Keyframe


@dataclass(frozen=True)
class Keyframe:
    """Per-frame camera increments (Deforum's zoom, angle, translation_x/y) and the totals."""

    zoom: float = 1.0            # scale applied this frame (>1 zooms in)
    angle: float = 0.0           # degrees this frame
    tx: float = 0.0              # pixels this frame, for a 512-pixel-wide image
    ty: float = 0.0
    total_angle: float = 0.0     # accumulated since the start (procedural backgrounds use these)
    total_x: float = 0.0
    total_y: float = 0.0
    total_zoom: float = 1.0      # oscillating zoom around 1


@dataclass
class CueTracker:
    """Turns per-frame audio features and beats into smoothed, stateful cues (one per stream)."""

    motion: Motion
    fps: int
    loudness: float = 0.0
    _onsets: deque[float] = field(default_factory=lambda: deque(maxlen=ONSET_MEMORY))
    _angle: float = 0.0
    _x: float = 0.0
    _y: float = 0.0
    _heading: float = 0.0

    def update(self, index: int, t: float, feats: FrameFeatures, timeline: NoteTimeline) -> Cue:
        """The cue for frame `index` starting at song time `t` (frames in order)."""
        dt = 1.0 / self.fps
        target = feats.loudness
        # Fast attack, slow release, the way a VU meter moves.
        rate = 0.6 if target > self.loudness else 1.0 - math.exp(-dt / 0.35)
        self.loudness += rate * (target - self.loudness)
        if feats.onset_time is not None:
            self._onsets.append(feats.onset_time)
        beat_time = timeline.last_beat(t + dt)
        tempo = timeline.tempo or _tempo_of(timeline) or 120.0
        if beat_time is None and self._onsets:
            beat_time = self._onsets[-1]
        beat = math.exp(-max(t - beat_time, 0.0) / BEAT_DECAY) if beat_time is not None else 0.0
        bar_seconds = 60.0 / tempo * timeline.beats_per_bar
        bar_phase = (t % bar_seconds) / bar_seconds
        keyframe = self._keyframe(t, beat, feats.onset, bar_phase)
        return Cue(index, t, self.loudness, feats.onset, beat, bar_phase, tempo, tuple(self._onsets), keyframe)

    def _keyframe(self, t: float, beat: float, onset: float, bar_phase: float) -> Keyframe:
        m = self.motion
        loud = self.loudness
        zoom = 1.0 + m.zoom * (0.25 * loud + beat)
        angle = m.rotate * loud * math.sin(2 * math.pi * bar_phase) * m.sway + m.rotate * 0.2 * onset
        # The drift's heading turns slowly, faster when the music is loud.
        self._heading += (0.15 + 0.6 * loud) / self.fps
        speed = m.drift * (0.3 + loud)
        tx = speed * math.cos(self._heading)
        ty = speed * math.sin(0.7 * self._heading)
        self._angle += angle
        self._x += tx
        self._y += ty
        total_zoom = 1.0 + 4.0 * m.zoom * beat
        return Keyframe(zoom, angle, tx, ty, self._angle, self._x, self._y, total_zoom)


def _tempo_of(timeline: NoteTimeline) -> float:
    beats = timeline.beat_times
    if len(beats) < 3:
        return 0.0
    gaps = sorted(b - a for a, b in zip(beats[-9:], beats[-8:], strict=False) if b > a)
    if not gaps:
        return 0.0
    return 60.0 / gaps[len(gaps) // 2]
