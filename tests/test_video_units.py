"""The video renderer's parts on their own: layout, timeline, audio features, canvas, painter, MP4 sink."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from tabagent import tuning
from tabagent.errors import BadConfig, InvalidInput
from tabagent.notes import Note
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.background import ProceduralBackground
from video_svc.canvas import Canvas, Sprite, rgb_to_yuv, yuv_to_rgb
from video_svc.encoder import Mp4Encoder
from video_svc.features import AudioAnalyzer
from video_svc.layout import MIN_HOLD, Layout
from video_svc.motion import CueTracker
from video_svc.overlay import SpriteBook
from video_svc.painter import FramePainter
from video_svc.spec import RenderSpec
from video_svc.styles import STYLES, get_style
from video_svc.timeline import NoteTimeline


def _timeline(parts: dict[str, list[Note]], tunings: dict[str, audio_pb2.Tuning] | None = None) -> NoteTimeline:
    timeline = NoteTimeline(tuple(parts))
    for name, notes in parts.items():
        tun = (tunings or {}).get(name) or tuning.standard("bass" if "bass" in name else "guitar").to_proto()
        timeline.set_part(video_pb2.PartInfo(part=name, tuning=tun))
        timeline.add_batch(audio_pb2.NoteBatch(part=name, notes=[n.to_proto() for n in notes], final_until=60))
    return timeline


def _inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return outer[0] <= inner[0] < inner[2] <= outer[2] and outer[1] <= inner[1] < inner[3] <= outer[3]


# -- layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (640, 360), (320, 180), (1920, 1080)])
def test_layout_gives_each_string_a_line_and_each_fret_a_cell(width: int, height: int) -> None:
    seven = audio_pb2.Tuning(strings=[35, 40, 45, 50, 55, 59, 64])
    five = audio_pb2.Tuning(strings=[23, 28, 33, 38, 43])
    timeline = _timeline({"guitar": [], "bass": []}, {"guitar": seven, "bass": five})
    layout = Layout(width, height, 30, timeline.freeze(), "t", timeline)
    frame = (0, 0, width, height)
    assert [p.strings for p in layout.parts] == [7, 5]
    previous_bottom = layout.title_rect[3]
    for p in layout.parts:
        assert _inside(p.panel, frame) and p.panel[1] >= previous_bottom
        previous_bottom = p.panel[3]
        assert _inside(p.staff, p.panel) and _inside(p.board, p.panel)
        assert list(p.string_y) == sorted(p.string_y, reverse=True)      # lowest string at the bottom
        for s in range(p.strings):
            cells = [p.cell(s, f) for f in range(p.frets_shown + 1)]
            assert all(_inside(c, p.board) for c in cells)
            assert all(a[2] <= b[0] for a, b in zip(cells, cells[1:], strict=False))
    assert layout.parts[0].staff[0] < layout.playhead_x < layout.parts[0].staff[2]


def test_many_parts_still_fit_a_small_frame() -> None:
    names = [f"guitar{i}" for i in range(5)] + ["bass"]
    timeline = _timeline({n: [] for n in names})
    layout = Layout(320, 180, 30, timeline.freeze(), "", timeline)
    assert len(layout.parts) == 6
    assert all(_inside(p.panel, (0, 0, 320, 180)) for p in layout.parts)


def test_a_note_lights_from_the_frame_holding_its_onset_for_at_least_min_hold() -> None:
    fps = 30
    long_note = Note(45, 1.0, 1.6, string=1, fret=0)
    short_note = Note(52, 2.0, 2.02, string=2, fret=2)
    timeline = _timeline({"guitar": [long_note, short_note]})
    layout = Layout(640, 360, fps, timeline.freeze(), "", timeline)

    def lit(t: float) -> set[tuple[int, int]]:
        return {(h.string, h.fret) for h in layout.highlighted(t)}

    onset_frame = math.floor(1.0 * fps) / fps
    assert (1, 0) in lit(onset_frame) and (1, 0) in lit(1.5)
    assert (1, 0) not in lit(onset_frame - 1 / fps) and (1, 0) not in lit(1.6)
    assert (2, 2) in lit(2.0 - 0.5 / fps) and (2, 2) in lit(2.0 + MIN_HOLD - 1 / fps)
    assert (2, 2) not in lit(2.0 + MIN_HOLD + 0.01)
    (hl,) = [h for h in layout.highlighted(1.2)]
    assert hl.rect == layout.part("guitar").cell(1, 0)


# -- timeline ------------------------------------------------------------------------------


def test_timeline_waits_for_every_wanted_part_and_ignores_the_rest() -> None:
    timeline = NoteTimeline(("guitar", "bass"))
    assert timeline.known_until() == -math.inf
    timeline.add_batch(audio_pb2.NoteBatch(part="guitar", final_until=4.0))
    assert timeline.known_until() == -math.inf
    timeline.add_batch(audio_pb2.NoteBatch(part="bass", final_until=2.5))
    timeline.add_batch(audio_pb2.NoteBatch(part="drums", final_until=1.0))
    assert timeline.known_until() == 2.5 and "drums" not in timeline.tracks
    assert [n for n, _ in timeline.freeze()] == ["guitar", "bass"]


def test_without_wanted_parts_the_layout_freezes_on_the_parts_seen() -> None:
    timeline = NoteTimeline()
    timeline.set_part(video_pb2.PartInfo(part="bass"))
    assert timeline.known_until() == 0.0
    assert [(n, len(t.strings)) for n, t in timeline.freeze()] == [("bass", 4)]
    timeline.add_batch(audio_pb2.NoteBatch(part="guitar", final_until=3.0))
    assert "guitar" not in timeline.tracks


def test_timeline_rejects_impossible_notes_and_skips_unfingered_ones() -> None:
    timeline = _timeline({"bass": []})
    kept = timeline.add_batch(
        audio_pb2.NoteBatch(part="bass", notes=[audio_pb2.Note(pitch=40, start=1, end=2, string=-1, fret=-1)], final_until=3)
    )
    assert kept == 0
    with pytest.raises(InvalidInput, match="string 4"):
        timeline.add_batch(
            audio_pb2.NoteBatch(part="bass", notes=[audio_pb2.Note(pitch=50, start=1, end=2, string=4, fret=3)])
        )
    with pytest.raises(InvalidInput, match="start"):
        timeline.add_batch(
            audio_pb2.NoteBatch(part="bass", notes=[audio_pb2.Note(pitch=50, start=2, end=1, string=1, fret=3)])
        )


def test_timeline_queries_windows_bars_and_forgets_the_past() -> None:
    notes = [Note(40 + i % 5, 0.5 * i, 0.5 * i + 0.4, string=i % 6, fret=0) for i in range(40)]
    notes.append(Note(40, 3.0, 9.0, string=0, fret=0))                      # a long one
    timeline = _timeline({"guitar": notes})
    window = timeline.between("guitar", 5.0, 6.0)
    assert {round(n.start, 2) for n in window} == {3.0, 5.0, 5.5}
    timeline.add_beats(video_pb2.Beats(times=[0.5 * i for i in range(16)], beats_per_bar=4))
    bars = [t for t, bar in timeline.beats_between(0.0, 8.0) if bar]
    assert bars == [0.0, 2.0, 4.0, 6.0]
    timeline.prune(8.0)
    kept = timeline.tracks["guitar"].notes
    assert any(n.end == 9.0 for n in kept)                                 # the long note survives...
    assert min(n.start for n in kept) >= 8.0 - 6.0                         # ...notes over for good do not
    assert timeline.between("guitar", 8.0, 8.5) == [n for n in kept if n.start < 8.5 and n.end > 8.0]


# -- audio features ------------------------------------------------------------------------


def _clicks(rate: int, times: list[float], seconds: float) -> np.ndarray:
    audio = np.zeros((int(rate * seconds), 1), dtype=np.float32)
    rng = np.random.default_rng(0)
    for t in times:
        i = int(t * rate)
        audio[i : i + 2000, 0] += (rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)).astype(np.float32)
    return audio


@pytest.mark.parametrize("rate", [44_100, 22_050])
def test_onsets_are_found_causally_and_chunking_does_not_change_them(rate: int) -> None:
    times = [0.5, 1.1, 1.7, 2.05, 2.9]
    audio = _clicks(rate, times, 3.5)
    results = []
    for block in (rate, 1234, 777):
        analyzer = AudioAnalyzer(rate)
        for start in range(0, audio.shape[0], block):
            analyzer.push(audio[start : start + block])
        analyzer.finish()
        fps = 30
        feats = [analyzer.frame(k / fps, (k + 1) / fps) for k in range(int(3.5 * fps))]
        results.append(feats)
        assert analyzer.buffered_hops < 5
    assert results[0] == results[1] == results[2]
    found = [f.onset_time for f in results[0] if f.onset_time is not None]
    assert len(found) == len(times)
    assert all(abs(a - b) < 0.03 for a, b in zip(found, times, strict=True))
    loud = [f.loudness for f in results[0]]
    assert max(loud[15:18]) > 0.5 and loud[5] == 0.0


# -- canvas and painter --------------------------------------------------------------------


def test_colour_conversion_matches_swscale_bt709() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    rgb = rgb.repeat(8, axis=0).repeat(8, axis=1)                 # flat 8x8 blocks: chroma filters agree inside
    canvas = Canvas.from_rgb(rgb, 48, 48)
    ours = rgb_to_yuv(rgb)
    assert np.abs(canvas.y.astype(float) - ours[..., 0]).max() <= 1.0
    centres = np.ix_(range(2, 24, 4), range(2, 24, 4))
    assert np.abs(canvas.u[centres].astype(float) - ours[4::8, 4::8, 1]).max() <= 1.0
    assert np.abs(canvas.v[centres].astype(float) - ours[4::8, 4::8, 2]).max() <= 1.0
    back = yuv_to_rgb(ours)
    assert np.abs(back - rgb).max() < 1.0


def test_sprites_blit_clipped_with_their_colours() -> None:
    canvas = Canvas(64, 32)
    canvas.fill(0, 0, 64, 32, (16, 128, 128))
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., :3] = (250, 200, 30)
    rgba[..., 3] = 255
    sprite = Sprite.from_rgba(rgba)
    canvas.blit(sprite, 58, 26)                                   # clipped at the corner
    canvas.blit(sprite, 10, 10, clip_x=(0, 16))
    y = rgb_to_yuv(np.array([250, 200, 30]))
    assert abs(int(canvas.y[27, 59]) - y[0]) <= 1 and abs(int(canvas.u[13, 29]) - y[1]) <= 1
    assert canvas.y[12, 15] != 16 and canvas.y[12, 17] == 16      # clipped at x = 16


@pytest.mark.parametrize("style", sorted(STYLES))
def test_painter_draws_highlights_where_the_layout_says(style: str) -> None:
    notes = [Note(45, 1.0, 1.5, string=1, fret=0), Note(52, 1.0, 1.5, string=2, fret=2), Note(57, 2.0, 2.4, string=3, fret=2)]
    bass = [Note(33, 1.0, 1.8, string=1, fret=0)]
    timeline = _timeline({"guitar": notes, "bass": bass})
    look = get_style(style)
    layout = Layout(640, 360, 30, timeline.freeze(), "Song", timeline)
    painter = FramePainter(layout, look, ProceduralBackground(look, 640, 360))
    cues = CueTracker(look.motion, 30)
    analyzer = AudioAnalyzer(44_100)
    analyzer.push(np.zeros((44_100 * 2, 1), dtype=np.float32))
    t = 1.0 - 0.01
    cue = cues.update(30, t, analyzer.frame(t, t + 1 / 30), timeline)
    canvas = painter.paint(cue)
    rgb = av.VideoFrame.from_ndarray(canvas.buffer, format="yuv420p").to_ndarray(format="rgb24", src_colorspace="ITU709")
    lit = layout.highlighted(t)
    assert {(h.part, h.string, h.fret) for h in lit} == {("guitar", 1, 0), ("guitar", 2, 2), ("bass", 1, 0)}
    for h in lit:
        x0, y0, x1, y1 = h.rect
        pixel = rgb[(y0 + y1) // 2, (x0 + x1) // 2 - 1 : (x0 + x1) // 2 + 2].mean(axis=0)
        assert np.linalg.norm(pixel - np.array(look.highlight)) < 30, (h, pixel)
    dark = layout.part("guitar").cell(3, 2)
    pixel = rgb[(dark[1] + dark[3]) // 2, (dark[0] + dark[2]) // 2]
    assert np.linalg.norm(pixel - np.array(look.highlight)) > 80


def test_labels_carry_their_technique_marks() -> None:
    timeline = _timeline({"guitar": []})
    layout = Layout(640, 360, 30, timeline.freeze(), "", timeline)
    book = SpriteBook(layout, get_style("jazz"))
    plain, hammer = book.label(0, 2, 7, False), book.label(0, 2, 7, False, "hammer_on")
    both = book.label(0, 2, 7, False, "slide,vibrato")
    assert plain.width < hammer.width < both.width
    assert book.label(0, 2, 7, False, "let_ring") is plain           # no tab letter for it
    assert book.label(0, 2, 7, True).height > plain.height            # lit labels stand out


# -- encoder and fragments -----------------------------------------------------------------


def test_fragments_cover_one_keyframe_interval_each_and_join_into_a_playable_file(tmp_path) -> None:
    enc = Mp4Encoder(160, 90, 10, 48_000, 1, preset="ultrafast")
    canvas = Canvas(160, 90)
    fragments = []
    for k in range(35):
        canvas.fill(0, 0, 160, 90, (16 + 5 * k, 128, 128))
        enc.add_audio(np.zeros((4800, 1), dtype=np.float32))
        enc.add_frame(canvas)
        fragments += enc.take()
    fragments += enc.finish()
    assert fragments[0].init
    media = [f for f in fragments[1:] if f.end > f.start]
    assert [(round(f.start, 3), round(f.end, 3)) for f in media][:3] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert media[-1].end == pytest.approx(3.5)
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"".join(f.data for f in fragments))
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 35


# -- spec ----------------------------------------------------------------------------------


def test_spec_defaults_and_limits() -> None:
    spec = RenderSpec.from_proto(video_pb2.RenderConfig(parts=["guitar", "guitar", "bass"], style="Synthwave"))
    assert (spec.width, spec.height, spec.fps, spec.style.name, spec.parts) == (1280, 720, 30, "synthwave", ("guitar", "bass"))
    with pytest.raises(BadConfig, match="expected_seconds"):
        RenderSpec.from_proto(video_pb2.RenderConfig(expected_seconds=-1))
    with pytest.raises(BadConfig, match="at most"):
        RenderSpec.from_proto(video_pb2.RenderConfig(parts=[f"p{i}" for i in range(7)]))
