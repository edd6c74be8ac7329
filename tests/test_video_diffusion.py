"""The diffusion background with a tiny random-weight pipeline saved by save_pretrained and loaded for real."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from video_fixtures import decode_frames, ffprobe, render, requests_for, running_server

from evalkit.examples import Song, make_song
from tabagent.v1 import video_pb2
from video_svc.config import VideoConfig
from video_svc.diffusion import (
    DiffusionBackground,
    DiffusionModel,
    find_weights,
    load_diffusion,
    warp,
)
from video_svc.features import FrameFeatures
from video_svc.holder import ModelHolder
from video_svc.motion import CueTracker, Keyframe
from video_svc.styles import get_style
from video_svc.timeline import NoteTimeline
from video_svc.tiny_pipeline import build_tiny_pipeline

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("diffusion") / "tiny-sd")


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("empty-hub"))


@pytest.fixture(scope="module")
def config(tiny_dir: Path, empty_cache: str) -> VideoConfig:
    return VideoConfig(
        diffusion_model_dir=str(tiny_dir), hub_cache=empty_cache, diffusion_width=64,
        diffusion_cadence=2, diffusion_steps=2, diffusion_device="cpu",
    )


@pytest.fixture(scope="module")
def model(config: VideoConfig) -> DiffusionModel:
    model, message = load_diffusion(config)
    assert model is not None, message
    return model


@pytest.fixture(scope="module")
def short_song() -> Song:
    return make_song(4.0, bpm=120.0, seed=3)


def test_the_pipeline_loads_from_a_local_folder(model: DiffusionModel, tiny_dir: Path) -> None:
    info = model.info()
    assert (info.name, info.backend, info.device, info.fallback) == ("tiny-sd", "diffusers", "cpu", False)
    assert "diffusers" in info.version
    assert type(model.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert model.multiple == 16      # VAE x8, one UNet downsampling


def test_weights_are_found_in_the_hub_cache(tiny_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--tabagent--tiny-sd"
    shutil.copytree(tiny_dir, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    config = VideoConfig(diffusion_model="tabagent/tiny-sd", hub_cache=str(tmp_path / "hub"))
    found = find_weights(config)
    assert found is not None
    assert found == (str(repo / "snapshots" / SNAPSHOT), "tabagent/tiny-sd")


def test_without_weights_the_background_is_procedural_and_says_so(empty_cache: str) -> None:
    config = VideoConfig(diffusion_model="nobody/no-such-model", hub_cache=empty_cache)
    backend = ModelHolder(config)
    backend.load()
    assert backend.diffusion is None
    info = backend.info(True)
    assert info.name == "procedural" and info.fallback
    assert "no diffusion weights" in info.message and "procedural" in info.message
    assert not backend.info(False).fallback


def test_the_background_is_painted_at_the_working_size(model: DiffusionModel) -> None:
    wide = replace(model, width=320)
    background = DiffusionBackground(wide, get_style("concert"), 1280, 720, seed=2)
    tracker = CueTracker(get_style("concert").motion, 30)
    images = [
        background.render(tracker.update(k, k / 30, FrameFeatures(0.5, 0.2), NoteTimeline()))
        for k in range(3)
    ]
    assert all(i.shape == (176, 320, 3) and i.dtype == np.uint8 for i in images)   # 320 x 180 -> multiples of 16
    assert np.abs(images[2].astype(int) - images[0].astype(int)).mean() > 0.5


def test_warp_moves_the_picture_like_a_camera() -> None:
    image = torch.zeros((1, 3, 32, 64))
    image[:, :, 12:20, 28:36] = 1.0
    same = warp(image, Keyframe(), 64)
    assert torch.allclose(same, image, atol=1e-5)
    moved = warp(image, Keyframe(tx=8.0 * 512 / 64), 64)          # 8 pixels right at this width
    cols = moved[0, 0].sum(dim=0)
    assert int(torch.argmax(cols)) in range(36, 44)
    zoomed = warp(image, Keyframe(zoom=2.0), 64)
    assert zoomed.sum() > 3.0 * image.sum()


async def test_a_stream_renders_with_the_diffusion_background(
    config: VideoConfig, model: DiffusionModel, short_song: Song, tmp_path: Path
) -> None:
    backend = ModelHolder(config, diffusion=model)
    request = video_pb2.RenderConfig(width=320, height=180, fps=10, style="synthwave", diffusion=True, seed=7)
    async with running_server(config, backend) as running:
        painted = await render(running.stub, requests_for(short_song, request))
        request.diffusion = False
        plain = await render(running.stub, requests_for(short_song, request))
    assert painted.info is not None and painted.info.background.backend == "diffusers"
    assert not painted.info.background.fallback
    assert plain.info is not None and plain.info.background.name == "procedural"
    path = painted.save(tmp_path / "painted.mp4")
    probe = ffprobe(path)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["aac", "h264"]
    assert abs(float(probe["format"]["duration"]) - short_song.seconds) < 0.1
    a = decode_frames(path, {5, 20, 35})
    b = decode_frames(plain.save(tmp_path / "plain.mp4"), {20})
    band = slice(20, 30)      # between the title bar and the first panel at 320x180
    assert np.abs(a[5][band].astype(int) - a[35][band].astype(int)).mean() > 2.0       # it moves
    assert np.abs(a[20][band].astype(int) - b[20][band].astype(int)).mean() > 5.0      # it is not the procedural one


async def test_asking_for_diffusion_without_weights_says_so_in_the_info(empty_cache: str, short_song: Song) -> None:
    config = VideoConfig(diffusion_model="nobody/no-such-model", hub_cache=empty_cache)
    async with running_server(config) as running:
        request = video_pb2.RenderConfig(width=320, height=180, fps=10, diffusion=True)
        rendered = await render(running.stub, requests_for(short_song, request))
    assert rendered.info is not None
    assert rendered.info.background.fallback and rendered.info.background.name == "procedural"
    assert "diffusion" in rendered.info.background.message
    assert rendered.summary is not None and rendered.summary.frames > 0
