"""The Transcriber gRPC service, in process, with the real Basic Pitch model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from transcriber_fixtures import warm_model

from evalkit.examples import Song
from evalkit.scoring import onset_scores
from tabagent import tuning as tunings
from tabagent.audio import iter_chunks, make_chunk
from tabagent.notes import Note
from tabagent.serving import channel_options
from tabagent.v1 import audio_pb2, transcriber_pb2, transcriber_pb2_grpc
from transcriber_svc.config import TranscriberConfig
from transcriber_svc.holder import ModelHolder, warm_up
from transcriber_svc.model import BasicPitchModel
from transcriber_svc.server import SERVICE_NAME, create_server


class Running:
    """A started server, its holder and a stub on a channel to it."""

    def __init__(self, config: TranscriberConfig, holder: ModelHolder) -> None:
        self.config = config
        self.holder = holder
        self.server, self.port = create_server(config, holder, "[::]:0")
        self.channel = grpc.aio.insecure_channel(f"localhost:{self.port}", options=channel_options())
        self.stub = transcriber_pb2_grpc.TranscriberStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def start(self, warm: bool = True) -> Running:
        await self.server.start()
        if warm:
            await self.server.warm()
        return self

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        await self.holder.close()


async def start_server(warm: bool = True, model: BasicPitchModel | None = None, **settings: object) -> Running:
    config = TranscriberConfig(metrics_port=0, **settings)  # type: ignore[arg-type]
    holder = ModelHolder.of(model or warm_model(), config.max_batch, config.batch_wait)
    return await Running(config, holder).start(warm)


@pytest.fixture(scope="module")
async def service() -> AsyncIterator[Running]:
    running = await start_server()
    yield running
    await running.stop()


def requests(config: transcriber_pb2.TranscribeConfig | None, chunks: Iterable[audio_pb2.AudioChunk]) -> list[transcriber_pb2.TranscribeRequest]:
    first = [transcriber_pb2.TranscribeRequest(config=config)] if config is not None else []
    return first + [transcriber_pb2.TranscribeRequest(audio=c) for c in chunks]


async def transcribe(stub: transcriber_pb2_grpc.TranscriberStub, reqs: list[transcriber_pb2.TranscribeRequest]) -> list[transcriber_pb2.TranscribeResponse]:
    async def gen() -> AsyncIterator[transcriber_pb2.TranscribeRequest]:
        for r in reqs:
            yield r

    return [r async for r in stub.Transcribe(gen())]


def stem_chunks(song: Song, part: str, seconds: float = 1.0, stereo: bool = False) -> list[audio_pb2.AudioChunk]:
    audio = song.stems[part][:, None]
    if stereo:
        audio = np.repeat(audio, 2, axis=1)
    return list(iter_chunks(audio, song.sample_rate, seconds))


def notes_of(responses: list[transcriber_pb2.TranscribeResponse]) -> tuple[list[Note], list[Note]]:
    notes, out = [], []
    for r in responses:
        if r.WhichOneof("payload") == "notes":
            notes += [Note.from_proto(n) for n in r.notes.notes]
            out += [Note.from_proto(n) for n in r.notes.out_of_range]
    return notes, out


async def test_guitar_stem_transcribes_with_fingering(service: Running, song: Song) -> None:
    config = transcriber_pb2.TranscribeConfig(instrument="guitar", song_id="t1")
    responses = await transcribe(service.stub, requests(config, stem_chunks(song, "guitar", stereo=True)))
    kinds = [r.WhichOneof("payload") for r in responses]
    assert kinds[0] == "info" and kinds[-1] == "summary"
    assert "notes" in kinds and "progress" in kinds
    info = responses[0].info
    assert (info.model.name, info.model.backend, info.part) == ("basic-pitch", "onnxruntime", "guitar")
    assert list(info.tuning.strings) == [40, 45, 50, 55, 59, 64]
    assert (info.min_pitch, info.max_pitch) == (40, 88)

    notes, _ = notes_of(responses)
    assert onset_scores(song.parts["guitar"], notes).f1 > 0.8
    open_strings = tunings.standard("guitar").strings
    for n in notes:
        assert n.pitch == open_strings[n.string] + n.fret and 0 <= n.fret <= 24
    # No two notes sound at once on one string.
    for string in range(6):
        on_string = sorted((n for n in notes if n.string == string), key=lambda n: n.start)
        for a, b in zip(on_string, on_string[1:], strict=False):
            assert a.end <= b.start + 1e-6
    # Batches are final in order: no note starts before an earlier batch's horizon.
    horizon = 0.0
    for r in responses:
        if r.WhichOneof("payload") == "notes":
            assert all(n.start >= horizon - 1e-6 for n in r.notes.notes)
            assert r.notes.final_until >= horizon
            horizon = r.notes.final_until
    summary = responses[-1].summary
    assert summary.notes == len(notes) and summary.part == "guitar"
    assert summary.seconds == pytest.approx(song.seconds, abs=0.01)


async def test_chunking_and_rate_do_not_change_the_notes(service: Running, song: Song) -> None:
    config = transcriber_pb2.TranscribeConfig(instrument="bass")
    one = notes_of(await transcribe(service.stub, requests(config, stem_chunks(song, "bass", 1.0))))[0]
    other = notes_of(await transcribe(service.stub, requests(config, stem_chunks(song, "bass", 0.37))))[0]
    assert [(n.pitch, n.start, n.end, n.string) for n in one] == [(n.pitch, n.start, n.end, n.string) for n in other]
    assert onset_scores(song.parts["bass"], one).f1 > 0.9


@pytest.mark.parametrize(("rate", "channels"), [(8_000, 1), (48_000, 2), (192_000, 1)])
async def test_any_rate_and_channel_count(service: Running, song: Song, rate: int, channels: int) -> None:
    import soxr

    audio = soxr.resample(song.stems["bass"][: 8 * song.sample_rate], song.sample_rate, rate, "HQ")
    frames = np.repeat(audio[:, None], channels, axis=1).astype(np.float32)
    chunks = list(iter_chunks(frames, rate, 1.0))
    responses = await transcribe(service.stub, requests(transcriber_pb2.TranscribeConfig(instrument="bass"), chunks))
    notes, _ = notes_of(responses)
    reference = [n for n in song.parts["bass"] if n.start < 7.5]
    assert onset_scores(reference, [n for n in notes if n.start < 7.5]).f1 > 0.85
    assert responses[-1].summary.seconds == pytest.approx(8.0, abs=0.01)


def _nan_chunk() -> list[audio_pb2.AudioChunk]:
    audio = np.zeros((4410, 1), np.float32)
    audio[100, 0] = np.nan
    return [make_chunk(audio, 44_100, 0)]


BAD_STREAMS = {
    "nan": (transcriber_pb2.TranscribeConfig(), _nan_chunk()),
    "eight channels": (transcriber_pb2.TranscribeConfig(), [make_chunk(np.zeros((441, 8), np.float32), 44_100, 0)]),
    "no config": (None, [make_chunk(np.zeros((441, 1), np.float32), 44_100, 0)]),
    "banjo": (transcriber_pb2.TranscribeConfig(instrument="banjo"), []),
    "offsets out of order": (
        transcriber_pb2.TranscribeConfig(),
        [make_chunk(np.zeros((441, 1), np.float32), 44_100, 0), make_chunk(np.zeros((441, 1), np.float32), 44_100, 100)],
    ),
    "threshold": (transcriber_pb2.TranscribeConfig(onset_threshold=1.5), []),
    "rate": (transcriber_pb2.TranscribeConfig(), [make_chunk(np.zeros((441, 1), np.float32), 4_000, 0)]),
    "no audio": (transcriber_pb2.TranscribeConfig(), []),
    "bad tuning": (transcriber_pb2.TranscribeConfig(tuning=audio_pb2.Tuning(strings=[40, 200])), []),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
async def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(service: Running, case: str) -> None:
    config, chunks = BAD_STREAMS[case]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await transcribe(service.stub, requests(config, chunks))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() and "Traceback" not in err.value.details()
    short = [make_chunk(np.zeros((22_050, 1), np.float32), 22_050, 0)]
    responses = await transcribe(service.stub, requests(transcriber_pb2.TranscribeConfig(), short))
    assert responses[-1].WhichOneof("payload") == "summary"


async def _hold_stream(stub: transcriber_pb2_grpc.TranscriberStub, release: asyncio.Event) -> grpc.aio.StreamStreamCall:
    async def gen() -> AsyncIterator[transcriber_pb2.TranscribeRequest]:
        yield transcriber_pb2.TranscribeRequest(config=transcriber_pb2.TranscribeConfig())
        yield transcriber_pb2.TranscribeRequest(audio=make_chunk(np.zeros((22_050, 1), np.float32), 22_050, 0))
        await release.wait()

    call = stub.Transcribe(gen())
    first = await call.read()
    assert first.WhichOneof("payload") == "info"
    return call


async def test_beyond_the_limits_is_resource_exhausted_and_cancel_frees_the_slot() -> None:
    running = await start_server(max_streams=1, max_queue=0)
    try:
        release = asyncio.Event()
        held = await _hold_stream(running.stub, release)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await transcribe(running.stub, requests(transcriber_pb2.TranscribeConfig(), []))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Cancelling the held stream frees its slot promptly.
        held.cancel()
        short = [make_chunk(np.zeros((22_050, 1), np.float32), 22_050, 0)]
        for _ in range(50):
            try:
                responses = await transcribe(running.stub, requests(transcriber_pb2.TranscribeConfig(), short))
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the cancelled stream never released its slot")
        assert responses[-1].WhichOneof("payload") == "summary"
        release.set()
    finally:
        await running.stop()


async def test_health_is_not_serving_until_warm() -> None:
    running = await start_server(warm=False)
    try:
        for name in ("", SERVICE_NAME):
            reply = await running.health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await transcribe(running.stub, requests(transcriber_pb2.TranscribeConfig(), []))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await running.server.warm()
        reply = await running.health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop()


async def test_dynamic_batching_gives_identical_notes(song: Song) -> None:
    """Three concurrent streams batched into shared forward passes (one onnxruntime thread:
    bit-identical activations) give the notes of unbatched streams."""
    model = BasicPitchModel(threads=1)
    warm_up(model)
    plain = await start_server(model=model)
    batched = await start_server(model=model, max_batch=8, batch_wait=0.2)
    parts = ["guitar", "bass", "guitar"]
    try:
        async def run(service: Running, part: str) -> list[tuple]:
            config = transcriber_pb2.TranscribeConfig(instrument=part)
            notes = notes_of(await transcribe(service.stub, requests(config, stem_chunks(song, part, 2.0))))[0]
            return [(n.pitch, n.start, n.end, n.velocity, n.string, n.fret) for n in notes]

        want = [await run(plain, p) for p in parts]
        got = await asyncio.gather(*(run(batched, p) for p in parts))
        assert list(got) == want
        runner = batched.holder.runner
        assert runner is not None and getattr(runner, "largest_batch", 0) >= 2
    finally:
        await plain.stop()
        await batched.stop()
