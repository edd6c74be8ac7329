"""The fast paint path draws the same frames as the reference path, pixel for pixel and byte for byte."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from video_fixtures import requests_for

from evalkit.examples import Song, make_song
from tabagent.v1 import video_pb2
from video_svc.canvas import Canvas, Scaler
from video_svc.config import VideoConfig
from video_svc.holder import ModelHolder
from video_svc.painter import FramePainter
from video_svc.session import RenderSession, render_offline
from video_svc.spec import RenderSpec


def _session(song: Song, style: str, reference: bool, width: int = 1280, height: int = 720) -> RenderSession:
    config = replace(VideoConfig(), diffusion="off", paint_threads=0, paint_reference=reference)
    msgs = requests_for(song, video_pb2.RenderConfig(width=width, height=height, fps=30, style=style,
                                                     parts=["guitar", "bass"], title="Frames"))
    session = RenderSession(RenderSpec.from_proto(msgs[0].config, config), ModelHolder(config), config)
    for msg in msgs[1:]:
        session.feed(msg)
    session.end_input()
    session._start()
    return session


@pytest.mark.parametrize("style", ["guitar_hero", "concert"])
def test_sampled_720p_frames_are_identical(song: Song, style: str) -> None:
    fast, reference = _session(song, style, False), _session(song, style, True)
    assert isinstance(fast.painter, FramePainter) and fast.painter._scaler is not None
    assert reference.painter is not None and reference.painter._scaler is None
    digests = []
    for k in range(61):
        a, b = fast._paint(k), reference._paint(k)  # frames are painted in order (cues carry state)
        if k % 15 == 0:
            assert a.to_frame() is a.to_frame()  # the encoder gets the painted frame itself, no copy
            np.testing.assert_array_equal(a.buffer, b.buffer, err_msg=f"frame {k}")
            digests.append(hashlib.sha1(a.buffer.tobytes()).hexdigest())
    assert len(set(digests)) > 1  # the frames move


def test_whole_videos_are_byte_identical() -> None:
    song = make_song(4.0, bpm=120.0, drums=True, seed=2)
    outputs = []
    for reference in (False, True):
        config = replace(VideoConfig(), diffusion="off", paint_reference=reference)
        msgs = requests_for(song, video_pb2.RenderConfig(width=320, height=180, fps=15, style="metal",
                                                         parts=["guitar", "bass"]))
        data, session = render_offline(msgs, ModelHolder(config), config)
        assert session.next_frame >= 60
        outputs.append(data)
    assert outputs[0] == outputs[1]


def test_scaler_matches_a_fresh_swscale_context_and_wraps_the_frame() -> None:
    rng = np.random.default_rng(3)
    scaler = Scaler(96, 54)
    for _ in range(3):
        rgb = rng.integers(0, 256, size=(27, 48, 3), dtype=np.uint8)
        fast = scaler.canvas(rgb)
        np.testing.assert_array_equal(fast.buffer, Canvas.from_rgb(rgb, 96, 54).buffer)
        fast.fill(0, 0, 4, 4, (16, 128, 128))  # drawing writes into the frame the encoder will take
        plane = np.frombuffer(fast.to_frame().planes[0], np.uint8).reshape(54, -1)
        assert (plane[:4, :4] == 16).all()
