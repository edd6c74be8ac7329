"""The VideoRenderer end to end on a real in-process gRPC server: the MP4, its audio, its tab highlights."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from video_fixtures import (
    Rendered,
    decode_audio,
    decode_frames,
    ffprobe,
    render,
    requests_for,
    running_server,
)

from evalkit.examples import Song
from tabagent import tuning
from tabagent.notes import Note
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.encoder import aac_priming
from video_svc.layout import Layout
from video_svc.styles import get_style
from video_svc.timeline import NoteTimeline

WIDTH, HEIGHT, FPS = 640, 360, 30
STYLE = "guitar_hero"


@pytest.fixture(scope="module")
async def server():
    async with running_server() as running:
        yield running


@pytest.fixture(scope="module")
async def rendered(server, song: Song) -> Rendered:
    config = video_pb2.RenderConfig(
        width=WIDTH, height=HEIGHT, fps=FPS, style=STYLE, parts=["guitar", "bass"], title="Example", song_id="t1"
    )
    return await render(server.stub, requests_for(song, config))


@pytest.fixture(scope="module")
def mp4(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rendered.save(tmp_path_factory.mktemp("video") / "video.mp4")


@pytest.fixture(scope="module")
def layout(song: Song) -> Layout:
    """The layout the renderer used, rebuilt from the same size and tunings, over the true notes."""
    timeline = NoteTimeline(("guitar", "bass"))
    for name, notes in song.parts.items():
        timeline.set_part(video_pb2.PartInfo(part=name, tuning=tuning.standard(name).to_proto()))
        timeline.add_batch(audio_pb2.NoteBatch(part=name, notes=[n.to_proto() for n in notes], final_until=99))
    return Layout(WIDTH, HEIGHT, FPS, timeline.freeze(), "Example", timeline)


def delay() -> float:
    """Media time of song time 0: the AAC priming."""
    return aac_priming(44_100, 2) / 44_100


def test_stream_answers_info_fragments_progress_and_summary(rendered: Rendered, song: Song) -> None:
    assert rendered.info is not None
    assert (rendered.info.width, rendered.info.height, rendered.info.fps) == (WIDTH, HEIGHT, FPS)
    assert (rendered.info.codec, rendered.info.audio_codec) == ("h264", "aac")
    assert rendered.info.background.name == "procedural" and not rendered.info.background.fallback
    assert rendered.fragments[0].init and not any(f.init for f in rendered.fragments[1:])
    media = [f for f in rendered.fragments[1:] if f.end > f.start]
    assert len(media) >= math.floor(song.seconds) - 1          # about one fragment per second
    ends = [f.end for f in media]
    assert ends == sorted(ends) and all(a.end == pytest.approx(b.start, abs=1e-6) for a, b in zip(media, media[1:], strict=False))
    assert rendered.progress and rendered.progress[-1].total_seconds == pytest.approx(song.seconds, abs=0.01)
    assert rendered.summary is not None
    assert rendered.summary.seconds == pytest.approx(song.seconds, abs=1e-3)
    assert rendered.summary.frames == math.ceil((song.seconds + delay()) * FPS - 1e-6)
    assert rendered.summary.bytes == len(rendered.data)


def test_mp4_is_h264_and_aac_and_lasts_as_long_as_the_song(mp4: Path, song: Song) -> None:
    probe = ffprobe(mp4)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    assert codecs == ["aac", "h264"]
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"], video["pix_fmt"]) == (WIDTH, HEIGHT, "yuv420p")
    assert video.get("color_space") == "bt709"
    assert abs(float(probe["format"]["duration"]) - song.seconds) < 0.1


def test_audio_track_is_the_input_not_a_resynthesis(mp4: Path, song: Song) -> None:
    decoded = decode_audio(mp4, song.sample_rate, 2)
    priming = aac_priming(44_100, 2)
    ref = song.mix.astype(np.float32)
    # Find the offset by cross-correlation: it must be exactly the encoder's priming.
    probe = ref[22050:66150, 0]
    scores = [float(np.dot(decoded[22050 + lag : 66150 + lag, 0], probe)) for lag in range(0, 3000)]
    assert int(np.argmax(scores)) == priming
    aligned = decoded[priming : priming + ref.shape[0]]
    assert aligned.shape == ref.shape
    corr = np.corrcoef(aligned.ravel(), ref.ravel())[0, 1]
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((aligned - ref) ** 2))
    assert corr > 0.99
    assert snr > 18.0


def _known_notes(song: Song) -> list[tuple[str, Note]]:
    """Notes to check: single arpeggio notes, a strummed chord and bass notes, spread over the song."""
    guitar = song.parts["guitar"]
    picks = [guitar[0], guitar[3], guitar[9], guitar[20], guitar[len(guitar) // 2]]
    bass = song.parts["bass"]
    return [("guitar", n) for n in picks] + [("bass", bass[2]), ("bass", bass[7]), ("bass", bass[-3])]


def test_layout_highlights_known_notes_at_their_onsets(layout: Layout, song: Song) -> None:
    for part, note in _known_notes(song):
        media = note.start + delay()
        k = math.floor(media * FPS)
        t = k / FPS - delay()
        lit = {(h.part, h.string, h.fret) for h in layout.highlighted(t)}
        assert (part, note.string, note.fret) in lit, (part, note)
        # Not a frame early: the frame before does not light this note yet.
        earlier = layout.lit(part, t - 1.0 / FPS)
        assert not any(abs(n.start - note.start) < 1e-9 and n.string == note.string for n in earlier)


def test_frames_show_the_highlight_at_the_layouts_cells(mp4: Path, layout: Layout, song: Song) -> None:
    style = get_style(STYLE)
    checks = []
    for part, note in _known_notes(song):
        k = math.floor((note.start + delay()) * FPS)
        t = k / FPS - delay()
        rect = next(h.rect for h in layout.highlighted(t) if (h.part, h.string, h.fret) == (part, note.string, note.fret))
        # A frame where this cell is dark: before the song's first note.
        checks.append((k, rect))
    frames = decode_frames(mp4, {k for k, _ in checks} | {5})
    target = np.array(style.highlight, dtype=np.float32)
    for k, (x0, y0, x1, y1) in checks:
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        lit = frames[k][cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0)
        dark = frames[5][cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0)
        assert np.linalg.norm(lit - target) < 45, (k, lit, target)
        assert np.linalg.norm(dark - target) > 120, (k, dark, target)


def test_frames_change_with_the_music(mp4: Path, layout: Layout, song: Song) -> None:
    # The band between the title bar and the first panel shows only the background.
    y0, y1 = layout.title_rect[3] + 2, layout.parts[0].panel[1] - 2
    assert y1 - y0 >= 4
    quiet = [int((t + delay()) * FPS) for t in (0.05, 0.15, 0.3)]            # before the first note
    loud = [int((t + delay()) * FPS) for t in np.arange(1.0, song.seconds - 1.0, 0.5)]
    frames = decode_frames(mp4, set(quiet) | set(loud))
    luma = {k: float(frames[k][y0:y1].mean()) for k in frames}
    assert np.mean([luma[k] for k in loud]) > np.mean([luma[k] for k in quiet]) + 8.0
    # ...and the loud frames differ among themselves (beats, onsets, scrolling tab).
    diffs = [np.abs(frames[a].astype(int) - frames[b].astype(int)).mean() for a, b in zip(loud, loud[1:], strict=False)]
    assert min(diffs) > 1.0
