"""The video's bars, chords, tempo and progress: numbered as the tabs number bars, named from
the notes, drawn where the layout says; and the beats the chain streams to the renderer."""

from __future__ import annotations

import av
import numpy as np
import pytest

from evalkit.examples import make_song
from gateway.videobeats import EarlyBars, Gate, VideoBeats
from tabagent.notes import Note
from tabagent.rhythm import BeatTracker, Rhythm
from tabagent.scoretime import ScoreMap
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.background import ProceduralBackground
from video_svc.features import AudioAnalyzer
from video_svc.hud import Hud
from video_svc.layout import Layout
from video_svc.motion import CueTracker
from video_svc.painter import FramePainter
from video_svc.styles import get_style
from video_svc.timeline import NoteTimeline


def streamed(seconds: float, bpm: float, seed: int) -> tuple[list[video_pb2.Beats], Rhythm, float]:
    """What VideoBeats sends for a synthesised song fed a second at a time, and the song's
    final rhythm (with the same bar phase), and the update time per call."""
    import time

    song = make_song(seconds, bpm=bpm, seed=seed)
    tracker = BeatTracker(44_100)
    feed = VideoBeats(tracker)
    out, cost, calls = [], 0.0, 0
    for i in range(0, song.mix.shape[0], 44_100):
        tracker.push(song.mix[i:i + 44_100].mean(axis=1))
        t0 = time.perf_counter()
        msg = feed.update(tracker.samples / 44_100)
        cost, calls = cost + time.perf_counter() - t0, calls + 1
        if msg is not None:
            out.append(msg)
    final = feed.bars.apply(tracker.result())
    rest = feed.finish(final)
    if rest is not None:
        out.append(rest)
    return out, final, cost / calls


@pytest.mark.parametrize(("bpm", "seed"), [(100.0, 0), (97.5, 101), (120.0, 103)])
def test_streamed_beats_and_bars_are_the_songs_own(bpm: float, seed: int) -> None:
    messages, final, per_call = streamed(50.0, bpm, seed)
    times = [t for m in messages for t in m.times]
    downbeats = [t for m in messages for t in m.downbeats]
    assert times == sorted(times) and len(times) == len(final.beats)
    assert np.max(np.abs(np.array(times) - np.array(final.beats))) < 0.02
    assert np.max(np.abs(np.array(downbeats) - np.array(final.downbeats))) < 0.02
    # Settled beats go out while the song streams, not all at its end.
    assert len(messages) > 3 and len(messages[-1].times) < len(times) / 2
    assert per_call < 0.5


def test_early_bars_give_the_final_rhythm_their_phase() -> None:
    beats = [0.5 + 0.6 * k for k in range(40)]
    bars = EarlyBars(downbeat=beats[2], beats_per_bar=4)
    rhythm = bars.apply(Rhythm(100.0, beats, beats[0::4], 4, (4, 4)))
    assert rhythm.downbeats == beats[2::4]
    assert EarlyBars().apply(Rhythm(100.0, beats, beats[1::4])).downbeats == beats[1::4]   # undecided: as is


def test_the_gate_holds_the_renderer_to_the_beats() -> None:
    gate = Gate(["guitar", "bass"])
    batch = audio_pb2.NoteBatch(part="guitar", final_until=12.0, notes=[Note(40, 1.0, 2.0).to_proto()])
    held = gate.notes(batch, beats_final=8.0)
    assert held.final_until == 8.0 and len(held.notes) == 1 and batch.final_until == 12.0
    gate.notes(audio_pb2.NoteBatch(part="bass", final_until=5.0), beats_final=8.0)
    moved = {b.part: b.final_until for b in gate.advance(beats_final=20.0)}
    assert moved == {"guitar": 12.0}              # bass is only final to 5 s; it was sent that far
    assert gate.advance(beats_final=20.0) == []


def test_video_bars_are_numbered_as_the_tab_numbers_them() -> None:
    rhythm = Rhythm(100.0, [0.51 + 0.6 * k for k in range(30)], [], 4, (4, 4))
    rhythm.downbeats = rhythm.beats[2::4]
    timeline = NoteTimeline(("guitar",))
    timeline.add_beats(video_pb2.Beats(tempo=rhythm.tempo, times=rhythm.beats, beats_per_bar=4,
                                       downbeats=rhythm.downbeats))
    score_map = ScoreMap.from_rhythm(rhythm)
    grid = score_map.rhythm(rhythm).grid(4)
    bars = grid.bars(grid.step_of(20.0))
    assert bars[0].pickup
    for t in (0.3, 1.0, 1.8, 5.0, 9.7, 15.2):
        step = grid.step_of(float(score_map.to_score(t)))
        bar = next(b for b in bars if b.start_step <= step < b.start_step + b.steps)
        got = timeline.bar_at(t)
        if bar.pickup:          # tab.musicxml's measure 0: not numbered
            assert got is None, (t, got)
        else:                   # the first full bar is 1 (bar.index counts the pickup)
            assert got is not None and got[0] == bar.index, (t, got, bar)


def test_a_frame_shows_the_chord_the_bar_and_the_progress() -> None:
    look = get_style("guitar_hero")
    beat = 0.5
    beats = [beat * k for k in range(24)]
    c_major = [Note(p, 2.0 + 0.02 * i, 3.9, 0.8, s, f) for i, (p, s, f) in enumerate([(48, 1, 3), (52, 2, 2), (55, 3, 0), (60, 4, 1)])]
    timeline = NoteTimeline(("guitar",))
    timeline.add_batch(audio_pb2.NoteBatch(part="guitar", notes=[n.to_proto() for n in c_major], final_until=60))
    timeline.add_beats(video_pb2.Beats(tempo=120.0, times=beats, beats_per_bar=4, downbeats=beats[::4]))
    layout = Layout(1280, 720, 30, timeline.freeze(), "Song", timeline)
    painter = FramePainter(layout, look, ProceduralBackground(look, 1280, 720), expected_seconds=12.0)
    hud = painter.hud
    assert isinstance(hud, Hud)
    t = 3.0
    assert hud.chord_at(t) == "C" and timeline.bar_at(t)[0] == 2   # type: ignore[index]
    analyzer = AudioAnalyzer(44_100)
    analyzer.push(np.zeros((44_100 * 4, 1), dtype=np.float32))
    cue = CueTracker(look.motion, 30).update(90, t, analyzer.frame(t, t + 1 / 30), timeline)
    rgb = av.VideoFrame.from_ndarray(painter.paint(cue).buffer, format="yuv420p").to_ndarray(
        format="rgb24", src_colorspace="ITU709").astype(float)
    bx0, by0, bx1, by1 = layout.band
    assert by1 > layout.title_rect[3] + 40          # the band reaches down to the parts
    highlight = np.array(look.highlight, dtype=float)
    near = np.linalg.norm(rgb - highlight, axis=2) < 40
    # The chord, large, at the band's right; the progress line filled a quarter of the way.
    assert near[by0:by1 // 2, bx1 - bx1 // 6:bx1].sum() > 200
    line = near[by1 - 20:by1, :].any(axis=0)
    filled = np.flatnonzero(line)
    assert filled.size and 0.2 < (filled.max() - filled.min()) / (bx1 - bx0) < 0.3
    # Past notes never cover the strings' names left of the staff.
    p = layout.parts[0]
    left = rgb[p.staff[1]:p.staff[3], : p.staff[0] - 2]
    assert np.linalg.norm(left - highlight, axis=2).min() > 60
