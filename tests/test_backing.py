"""Backing tracks: the mix minus a stem, written as both stream in chunks that do not line up,
holding only the mix the stems have not reached."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from gateway.backing import BackingTracks, SongAudio

RATE = 44_100


def read_flac(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray().reshape(-1, 2) for f in c.decode(audio=0)]
    return np.concatenate(frames).astype(np.float32) / 32768.0


def signals(seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    n = int(seconds * RATE)
    stem = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / RATE))[:, None].repeat(2, axis=1).astype(np.float32)
    rest = (0.1 * rng.standard_normal((n, 2))).astype(np.float32)   # peaks stay under 1: no clipping
    return stem + rest, stem


@pytest.mark.parametrize(("mix_block", "stem_block"), [(44_100, 44_100), (4_410, 30_000), (50_000, 1_000)])
def test_mix_minus_stem_whatever_the_chunking(tmp_path: Path, mix_block: int, stem_block: int) -> None:
    mix, stem = signals()
    tracks = BackingTracks(tmp_path, RATE)
    tracks.add_part("guitar", "guitar")
    tracks.add_part("lead", "guitar")   # two parts from one stem get one track each
    lag = 2 * stem_block
    for start in range(0, mix.shape[0], mix_block):
        tracks.add_mix(mix[start:start + mix_block], start)
        # The stem trails the mix by `lag` frames, in its own chunk size.
        done = len(range(0, max(0, min(mix.shape[0], start + mix_block) - lag), stem_block))
        for k in range(getattr(tracks, "_sent", 0), done):
            s = k * stem_block
            tracks.add_stem("guitar", stem[s:s + stem_block], s)
        tracks._sent = max(done, getattr(tracks, "_sent", 0))  # type: ignore[attr-defined]
    for k in range(tracks._sent, -(-mix.shape[0] // stem_block)):  # type: ignore[attr-defined]
        s = k * stem_block
        tracks.add_stem("guitar", stem[s:s + stem_block], s)
    paths = tracks.close()
    assert set(paths) == {"guitar", "lead"} and not tracks.failed
    for path in paths.values():
        got = read_flac(path)
        assert got.shape == mix.shape
        assert np.max(np.abs(got - (mix - stem))) < 2e-4   # 16-bit FLAC
    # Only the stretch the stem had not reached was held, not the song.
    assert tracks.held_peak <= lag + 2 * mix_block + stem_block   # blocks go whole


def test_a_stem_that_falls_behind_turns_the_tracks_off(tmp_path: Path) -> None:
    mix, _ = signals(4.0)
    tracks = BackingTracks(tmp_path, RATE, max_held_seconds=1.0)
    path = tracks.add_part("bass", "bass")
    for start in range(0, mix.shape[0], RATE // 2):
        tracks.add_mix(mix[start:start + RATE // 2], start)
    assert "behind" in tracks.failed
    assert tracks.close() == {} and not path.exists()
    assert tracks.held_peak <= 1.5 * RATE


async def test_song_audio_writes_the_original_and_describes_each_track(tmp_path: Path) -> None:
    mix, stem = signals(2.0)
    wanted = {"original.flac", "no-guitar.flac"}
    audio = SongAudio(tmp_path, RATE, lambda name: name in wanted)
    separator = SimpleNamespace(name="dsp", fallback=True, message="no weights")
    half = mix.shape[0] // 2
    await audio.mix(mix[:half], 0)
    audio.parts({"guitar": ["guitar"], "bass": ["bass"]}, separator, RATE)
    await audio.mix(mix[half:], half)
    await audio.stem("guitar", stem, 0)
    await audio.stem("bass", stem, 0)   # no track wanted for bass: ignored
    paths, info, missing = await audio.close()
    assert set(paths) == {"original.flac", "no-guitar.flac"} and missing == ""
    assert np.max(np.abs(read_flac(paths["original.flac"]) - mix)) < 2e-4
    assert info["guitar"]["file"] == "no-guitar.flac" and info["guitar"]["fallback"] is True
    assert "DSP fallback" in info["guitar"]["note"]
