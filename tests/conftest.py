"""Shared pytest fixtures: synthesised songs and the optional shared data set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evalkit.examples import Song, make_song

SHARED_DATA = Path(os.environ.get("TABAGENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def song() -> Song:
    """A 12 s guitar + bass + drums song with known notes."""
    return make_song(12.0, bpm=100.0, drums=True, seed=1)


@pytest.fixture(scope="session")
def shared_track() -> Path:
    """The Slakh2100 track in ../shared/data; skips when absent (fresh clones)."""
    track = SHARED_DATA / "slakh2100_Track01501"
    if not track.is_dir():
        pytest.skip("../shared/data is not present")
    return track
