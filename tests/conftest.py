"""Shared pytest fixtures: synthesised songs and the optional shared data set."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from evalkit.examples import Song, make_song

if TYPE_CHECKING:
    from launcher.embedded import LocalChain


def pytest_configure(config: pytest.Config) -> None:
    """Hermetic weights: no test downloads Demucs, or finds the developer's cached copy.

    Set before any test (and inherited by the service processes some tests start); the
    download tests give their own cache folder and a local mirror explicitly.
    """
    os.environ["TABAGENT_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="tabagent-tests-torch-")


SHARED_DATA = Path(os.environ.get("TABAGENT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
async def chain() -> AsyncIterator[LocalChain]:
    """The embedded chain (separator, transcriber, video; no video rendering), one per
    test module that asks for it."""
    from launcher.embedded import LocalChain

    async with LocalChain(video=False) as c:
        yield c


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
