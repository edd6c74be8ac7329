"""The performance paths keep results: DSP stem subsets, early note release, parallel batches, no deadlock."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gateway_fixtures import collect, write_audio

from evalkit.examples import make_song
from gateway.chain import stems_to_request
from launcher.embedded import LocalChain
from separator_svc.dsp import DspModel
from tabagent.audio import StreamResampler
from tabagent.client import AsyncClient, process_config
from tabagent.v1 import transcriber_pb2
from transcriber_svc.basicpitch import AUDIO_N_SAMPLES
from transcriber_svc.model import BasicPitchModel, ModelOutput
from transcriber_svc.pipeline import NoteTracker
from transcriber_svc.request import parse_config
from transcriber_svc.runner import BatchingRunner


def _separate(stems: list[str], mix: np.ndarray, block: int = 30_000) -> dict[str, np.ndarray]:
    stream = DspModel().open_stream(stems)
    outs = [stream.push(mix[i : i + block]) for i in range(0, mix.shape[0], block)] + [stream.finish()]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


@pytest.fixture(scope="module")
def dsp_stems() -> dict[str, np.ndarray]:
    song = make_song(24.0, seed=3)
    return {"mix": song.mix, **_separate(["guitar", "bass"], song.mix)}


def test_dsp_subsets_of_stems_are_bit_identical_to_all_stems(dsp_stems: dict[str, np.ndarray]) -> None:
    # Asking for fewer stems skips masks, medians and overlap-adds nobody reads: the
    # stems that are asked for must not change by a single bit.
    # ("other" is the harmonic rest beside guitar when guitar is asked for, all of it
    # otherwise: it is compared with the four-stem set.)
    mix = dsp_stems["mix"][: 8 * 44_100]
    every = _separate([], mix)
    four = _separate(["drums", "bass", "other", "vocals"], mix)
    for subset, reference in ((["guitar", "bass"], every), (["guitar"], every), (["drums"], every),
                              (["other", "bass"], four), (["bass"], every)):
        got = _separate(subset, mix)
        for name in subset:
            assert np.array_equal(got[name], reference[name]), (subset, name)


def test_the_chain_asks_for_names_every_separator_serves() -> None:
    assert stems_to_request(["guitar", "bass"]) == ["guitar", "bass"]
    assert stems_to_request(["bass", "guitar", "guitar"]) == ["bass", "guitar"]
    assert set(DspModel().stems_for(stems_to_request(["guitar", "bass"]))) == {"guitar", "bass"}


def _first_notes(stem: np.ndarray, early: float, model: BasicPitchModel) -> tuple[float, int]:
    """Audio seconds pushed when the first fingered bass notes came out, and the note count."""
    settings = parse_config(transcriber_pb2.TranscribeConfig(instrument="bass"), 20.0, early)
    tracker = NoteTracker(settings.tuning, "bass", settings.decoder, settings.post, early=settings.early)
    resampler = StreamResampler(44_100, 22_050, 1)
    first, count = float("inf"), 0
    for i in range(0, stem.shape[0], 44_100):
        windows = tracker.push_audio(resampler.process(stem[i : i + 44_100].mean(axis=1, keepdims=True))[:, 0])
        if len(windows):
            notes = tracker.add_outputs(model.forward_each(windows)).notes
            count += len(notes)
            if notes and first == float("inf"):
                first = tracker.audio_seconds
    tail = resampler.process(np.zeros((0, 1), np.float32), last=True)
    windows = np.concatenate([tracker.push_audio(tail[:, 0]), tracker.finish_audio()])
    count += len(tracker.add_outputs(model.forward_each(windows)).notes) + len(tracker.flush().notes)
    return first, count


def test_early_release_brings_the_first_notes_forward(dsp_stems: dict[str, np.ndarray]) -> None:
    # On a separated stem natural cuts are rare: without early release the first notes
    # wait for the decoder's 20 s buffer; with it they leave after about 8 s of audio.
    model = BasicPitchModel(threads=1)
    late, late_count = _first_notes(dsp_stems["bass"], 0.0, model)
    early, early_count = _first_notes(dsp_stems["bass"], 20.0, model)
    assert early <= 12.0 < late
    assert abs(early_count - late_count) <= max(2, late_count // 20)


class _CountingModel(BasicPitchModel):
    """The real model, counting the forward passes in flight at once."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self._lock = threading.Lock()
        self.now = self.most = 0

    def forward(self, windows: np.ndarray) -> ModelOutput:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return super().forward(windows)
        finally:
            with self._lock:
                self.now -= 1


async def test_batches_run_side_by_side_and_stay_bit_identical() -> None:
    model = _CountingModel()
    rng = np.random.default_rng(5)
    windows = [(0.1 * rng.standard_normal((3, AUDIO_N_SAMPLES, 1))).astype(np.float32) for _ in range(4)]
    expected = [model.forward_each(w) for w in windows]
    with ThreadPoolExecutor(2) as pool:
        runner = BatchingRunner(model, pool, max_batch=3, max_wait=0.0, parallel=2)
        try:
            got = await asyncio.gather(*(runner.run(w) for w in windows))
        finally:
            await runner.close()
    assert model.most == 2
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g.note, e.note) and np.array_equal(g.onset, e.onset)
        assert np.array_equal(g.contour, e.contour)


async def test_songs_finish_when_every_service_is_at_its_limit(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    # One separator slot, two transcriber slots (one song's parts), four songs at once:
    # the songs queue at every service and all finish (the gateway opens a song's
    # transcriber streams only once the separator has taken it, so a song never holds
    # transcriber slots while it waits for a separator slot).
    monkeypatch.setenv("SEPARATOR_MAX_STREAMS", "1")
    monkeypatch.setenv("TRANSCRIBER_MAX_STREAMS", "2")
    monkeypatch.setenv("GATEWAY_MAX_STREAMS", "4")
    path = write_audio(tmp_path / "song.wav", make_song(4.0, seed=7).mix)
    async with LocalChain(video=False) as chain, AsyncClient(chain.gateway_addr, retries=0) as client:
        songs = [collect(client, path, process_config(filename="song.wav")) for _ in range(4)]
        results = await asyncio.wait_for(asyncio.gather(*songs), timeout=120)
    assert all(r.done is not None and r.notes.get("bass") for r in results)
