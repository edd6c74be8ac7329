"""Dynamic batching: segments of concurrent streams share forward passes, results unchanged."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from separator_fixtures import (
    RATE,
    empty_dir,
    noise_song,
    reference,
    requests,
    running_server,
    separate,
    server_config,
    tiny_repo,
)

from separator_svc.holder import ModelHolder
from separator_svc.model import DemucsModel, load_model
from separator_svc.runner import BatchingSegmentRunner, SegmentRunner


@pytest.fixture(scope="module")
def batched() -> DemucsModel:
    model = load_model(
        "htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"), max_batch=4, max_wait=0.05
    )
    assert isinstance(model, DemucsModel)
    assert isinstance(model.runners[0], BatchingSegmentRunner)
    yield model
    model.close()


def test_batched_forward_equals_single_segments(batched: DemucsModel) -> None:
    runner = batched.runners[0]
    plain = SegmentRunner(runner.model)
    rng = np.random.default_rng(0)
    segments = [
        torch.from_numpy(rng.standard_normal((2, batched.segment_length)).astype(np.float32) * s)
        for s in (0.01, 0.3, 1.0)
    ]
    together = plain.run_batch(torch.stack(segments))
    for i, seg in enumerate(segments):
        torch.testing.assert_close(together[i], plain.run(seg), rtol=1e-4, atol=1e-5)


def test_concurrent_streams_batch_and_stay_exact(batched: DemucsModel) -> None:
    runner = batched.runners[0]
    songs = [noise_song(3 * RATE + 1000 + 100 * i, seed=30 + i) for i in range(3)]
    results: dict[int, dict[str, np.ndarray]] = {}
    start = threading.Barrier(len(songs))

    def work(i: int) -> None:
        stream = batched.open_stream(["bass", "vocals"])
        start.wait()
        pieces = [stream.push(songs[i][j : j + RATE]) for j in range(0, songs[i].shape[0], RATE)]
        pieces.append(stream.finish())
        results[i] = {k: np.concatenate([p[k] for p in pieces]) for k in ("bass", "vocals")}

    calls, batches = runner.calls, runner.batches
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(songs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ran, in_batches = runner.calls - calls, runner.batches - batches
    assert ran == 3 * len(songs)
    assert in_batches < ran, "no segments were batched together"
    for i, song in enumerate(songs):
        ref = reference(batched, song)
        for stem in ("bass", "vocals"):
            np.testing.assert_allclose(results[i][stem], ref[stem], rtol=1e-4, atol=1e-5)


def test_lone_stream_waits_at_most_max_wait(batched: DemucsModel) -> None:
    runner = batched.runners[0]
    segment = torch.zeros(2, batched.segment_length)
    runner.run(segment)
    started = time.perf_counter()
    runner.run(segment)
    assert time.perf_counter() - started < runner.max_wait + 1.0


async def test_server_batches_concurrent_streams(batched: DemucsModel) -> None:
    store = ModelHolder.of({"htdemucs": batched})
    async with running_server(store, server_config(max_streams=3, max_batch=4)) as running:
        songs = [noise_song(4 * RATE + 7 * i, seed=40 + i) for i in range(3)]
        results = await asyncio.gather(
            *(separate(running.stub, requests(s, stems=["drums"])) for s in songs)
        )
    for song, result in zip(songs, results, strict=True):
        np.testing.assert_allclose(result.audio("drums"), reference(batched, song)["drums"], rtol=1e-4, atol=1e-5)
