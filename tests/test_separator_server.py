"""The Separator gRPC service, in-process on a real grpc.aio server with a tiny random-weight bag."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from separator_fixtures import (
    RATE,
    empty_dir,
    expect_error,
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
from separator_svc.server import SERVICE_NAME
from tabagent.audio import make_chunk
from tabagent.v1 import separator_pb2

CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def tiny() -> DemucsModel:
    model = load_model("htdemucs", tiny_repo("htdemucs"), "cpu", hub_cache=empty_dir("hub"))
    assert isinstance(model, DemucsModel)
    return model


@pytest.fixture(scope="module")
async def server(tiny: DemucsModel):
    store = ModelHolder.of({"htdemucs": tiny})
    async with running_server(store, server_config(max_chunk_bytes=512 * 1024)) as running:
        yield running


async def test_health_goes_serving_after_warm_up(tiny: DemucsModel) -> None:
    store = ModelHolder.of({"htdemucs": tiny})
    async with running_server(store, warm=False) as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        for name in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        details = await expect_error(running.stub, requests(noise_song(1000)), CODE.UNAVAILABLE)
        assert "loading" in details
        await running.server.warm()
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert set(store.models) == {"htdemucs", "dsp"}


async def test_separate_streams_exact_stems(server, tiny: DemucsModel) -> None:
    mix = noise_song(4 * RATE + 777, seed=11)
    result = await separate(server.stub, requests(mix, stems=["bass", "drums"], song_id="s1"))
    assert result.kinds[0] == "info" and result.kinds[-1] == "summary"
    info = result.info
    assert info.model.name == "htdemucs" and not info.model.fallback
    assert list(info.sources) == ["drums", "bass", "other", "vocals"]
    assert list(info.stems) == ["bass", "drums"]
    assert info.sample_rate == RATE and info.segment_seconds == pytest.approx(2.0)
    assert set(result.stems) == {"bass", "drums"}
    ref = reference(tiny, mix)
    for stem in ("bass", "drums"):
        chunks = result.stems[stem]
        offsets = [c.offset for c in chunks]
        sizes = [len(c.pcm) // 8 for c in chunks]
        assert offsets == list(np.cumsum([0, *sizes[:-1]]))
        assert max(sizes) <= RATE
        np.testing.assert_allclose(result.audio(stem), ref[stem], rtol=1e-5, atol=1e-6)
    assert result.summary.seconds == pytest.approx(mix.shape[0] / RATE)
    assert result.summary.segments == 3
    assert result.summary.compute_seconds > 0
    assert result.progress[-1].done_seconds == pytest.approx(result.summary.seconds)
    # Stems come interleaved, in time order per stem.
    stems_in_order = [k for k in result.kinds if k == "stem"]
    assert len(stems_in_order) == sum(len(v) for v in result.stems.values())


async def test_first_stem_arrives_before_the_song_is_sent(server) -> None:
    mix = noise_song(8 * RATE, seed=12)
    msgs = requests(mix, stems=["bass"])
    sent = 0
    first_stem_after = None

    async def slow():
        nonlocal sent
        for msg in msgs:
            yield msg
            sent += 1
            await asyncio.sleep(0.15)

    async for response in server.stub.Separate(slow(), timeout=60):
        if response.WhichOneof("payload") == "stem" and first_stem_after is None:
            first_stem_after = sent
    # 2 s of audio (one segment) are in after 3 messages; the song takes 9.
    assert first_stem_after is not None and first_stem_after < len(msgs)


async def test_fallback_is_reported_in_info() -> None:
    fallback = load_model("htdemucs", empty_dir("repo"), "cpu", hub_cache=empty_dir("hub"))
    store = ModelHolder.of({"htdemucs": fallback})
    async with running_server(store) as running:
        mix = noise_song(2 * RATE, seed=13)
        result = await separate(running.stub, requests(mix, stems=["guitar", "bass"]))
    assert result.info.model.fallback
    assert "FALLBACK" in result.info.model.message
    assert result.info.model.backend == "dsp"
    assert result.audio("guitar").shape == mix.shape


@pytest.mark.parametrize(
    "case",
    ["nan", "channels", "offset", "oversize", "no_config", "empty", "second_config", "stem", "model", "overlap", "no_audio"],
)
async def test_bad_input_is_invalid_argument_and_server_keeps_serving(server, case: str) -> None:
    config = separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig())
    good = noise_song(RATE // 2, seed=14)
    audio = separator_pb2.SeparateRequest(audio=make_chunk(good, RATE, 0))
    bad_nan = good.copy()
    bad_nan[100, 1] = np.nan
    msgs, expect = {
        "nan": ([config, audio, separator_pb2.SeparateRequest(audio=make_chunk(bad_nan, RATE, good.shape[0]))], "NaN"),
        "channels": ([config, separator_pb2.SeparateRequest(audio=make_chunk(np.zeros((100, 8), np.float32), RATE, 0))], "8 audio channels"),
        "offset": ([config, audio, separator_pb2.SeparateRequest(audio=make_chunk(good, RATE, 5))], "expected 22050"),
        "oversize": ([config, separator_pb2.SeparateRequest(audio=make_chunk(noise_song(2 * RATE), RATE, 0))], "limit"),
        "no_config": ([audio], "SeparateConfig"),
        "empty": ([], "ended before its config"),
        "second_config": ([config, audio, config], "only the first"),
        "stem": ([separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(stems=["kazoo"]))], "kazoo"),
        "model": ([separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(model="htdemucs_ft"))], "not loaded"),
        "overlap": ([separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(overlap=1.5))], "overlap"),
        "no_audio": ([config], "without any audio"),
    }[case]
    details = await expect_error(server.stub, msgs, CODE.INVALID_ARGUMENT)
    assert expect in details
    assert "Traceback" not in details
    ok = await separate(server.stub, requests(noise_song(RATE // 4, seed=15), stems=["vocals"]))
    assert ok.summary is not None


async def test_over_the_limits_is_resource_exhausted_quickly(tiny: DemucsModel) -> None:
    store = ModelHolder.of({"htdemucs": tiny})
    async with running_server(store, server_config(max_streams=1, max_queue=0)) as running:
        hold = asyncio.Event()

        async def held():
            yield requests(noise_song(1000))[0]
            await hold.wait()

        first = running.stub.Separate(held(), timeout=30)
        assert (await first.read()).WhichOneof("payload") == "info"
        started = time.perf_counter()
        details = await expect_error(running.stub, requests(noise_song(1000)), CODE.RESOURCE_EXHAUSTED)
        assert time.perf_counter() - started < 2.0
        assert "busy" in details
        first.cancel()
        hold.set()
        # The slot is free again once the first stream is gone.
        for _ in range(50):
            try:
                await separate(running.stub, requests(noise_song(1000)))
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == CODE.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the slot was never released")


async def test_cancel_stops_compute_promptly(tiny: DemucsModel) -> None:
    store = ModelHolder.of({"htdemucs": tiny})
    async with running_server(store, server_config(max_streams=1, max_queue=0)) as running:
        runner = tiny.runners[0]
        before = runner.calls
        song = requests(noise_song(40 * RATE, seed=16), stems=["bass"])

        async def fast():
            for msg in song:
                yield msg

        call = running.stub.Separate(fast(), timeout=60)
        async for response in call:
            if response.WhichOneof("payload") == "stem":
                break
        call.cancel()
        await asyncio.sleep(1.5)  # the segments already in flight (up to SEPARATOR_WORKERS) finish
        calls = runner.calls
        await asyncio.sleep(1.0)
        assert runner.calls == calls, "segments kept running after the client cancelled"
        assert calls - before < 20  # far from the 27 segments of the whole song
        ok = await separate(running.stub, requests(noise_song(RATE // 4), stems=["bass"]))
        assert ok.summary is not None


async def test_mono_low_rate_input_is_resampled(server) -> None:
    mono = noise_song(int(1.5 * 16_000), seed=17, channels=1)
    result = await separate(server.stub, requests(mono, rate=16_000, stems=["other"]))
    out = result.audio("other")
    assert out.shape[1] == 2
    assert abs(out.shape[0] - 1.5 * RATE) <= 2
    assert result.stems["other"][0].sample_rate == RATE


@pytest.mark.slow
async def test_backpressure_keeps_a_fast_client_close_to_the_output(tiny: DemucsModel) -> None:
    store = ModelHolder.of({"htdemucs": tiny})
    async with running_server(store, server_config(read_ahead=2)) as running:
        msgs = requests(noise_song(60 * RATE, seed=18), stems=["bass"])
        sent = 0

        async def as_fast_as_possible():
            nonlocal sent
            for msg in msgs:
                yield msg
                sent += 1

        leads = []
        async for response in running.stub.Separate(as_fast_as_possible(), timeout=120):
            if response.WhichOneof("payload") == "progress":
                leads.append(sent - response.progress.done_seconds)
    # The client could push all 60 s at once; flow control holds it to the read-ahead,
    # one compute step and the transport's buffers ahead of the separated audio.
    assert max(leads) < 35, leads
    assert leads[0] < 35 and sent == len(msgs)
