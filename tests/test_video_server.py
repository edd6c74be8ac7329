"""The VideoRenderer's stream behaviour: progressive output, bad input, limits, health, cancellation."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from video_fixtures import expect_error, render, requests_for, running_server, song_parts

from evalkit.examples import Song
from tabagent.audio import make_chunk
from tabagent.v1 import audio_pb2, video_pb2
from video_svc.config import VideoConfig
from video_svc.server import SERVICE_NAME
from video_svc.session import RenderSession

CODE = grpc.StatusCode
SMALL = dict(width=320, height=180, fps=30)


@pytest.fixture(scope="module")
async def server():
    async with running_server() as running:
        yield running


def _config(**kwargs: object) -> video_pb2.RenderRequest:
    return video_pb2.RenderRequest(config=video_pb2.RenderConfig(**{**SMALL, **kwargs}))  # type: ignore[arg-type]


def _audio(seconds: float = 1.0, offset: int = 0) -> video_pb2.RenderRequest:
    samples = np.zeros((int(44_100 * seconds), 2), dtype=np.float32)
    return video_pb2.RenderRequest(audio=make_chunk(samples, 44_100, offset))


async def test_first_fragment_arrives_while_the_song_is_still_being_sent(server, song: Song) -> None:
    reqs = requests_for(song, video_pb2.RenderConfig(**SMALL, parts=["guitar", "bass"]))
    got_fragment = asyncio.Event()
    sent = {"audio": 0.0, "notes_at": None}

    async def paced():
        for r in reqs:
            if r.HasField("audio"):
                start = r.audio.offset / 44_100
                if start >= 6.0 and not got_fragment.is_set():
                    # Half the song is still unsent: hold it back until a fragment arrives.
                    await asyncio.wait_for(got_fragment.wait(), timeout=30)
                sent["audio"] = start + len(r.audio.pcm) / 8 / 44_100
            if r.HasField("notes") and sent["notes_at"] is None and r.notes.notes:
                sent["notes_at"] = time.perf_counter()
            yield r
            await asyncio.sleep(0)

    first = None
    async for resp in server.stub.Render(paced(), timeout=60):
        if resp.HasField("fragment") and not resp.fragment.init and first is None:
            first = (time.perf_counter(), sent["audio"], resp.fragment)
            got_fragment.set()
    assert first is not None
    at, audio_sent, fragment = first
    assert audio_sent <= 6.0 < song.seconds - 4.0
    assert at - sent["notes_at"] < 5.0          # seconds after the first tab events
    assert fragment.start == pytest.approx(0.0) and fragment.end == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    ("reqs", "words"),
    [
        ([_audio()], "RenderConfig"),
        ([], "config"),
        ([_config(width=3842, height=2160)], "3842x2160"),
        ([_config(width=4096, height=1080)], "outside"),
        ([_config(width=641, height=360)], "even"),
        ([_config(fps=61)], "fps"),
        ([_config(fps=-2)], "fps"),
        ([_config(style="disco")], "synthwave"),
        ([_config(parts=["lead guitar"])], "part name"),
        ([_config(), _audio(), _config()], "first message"),
        ([_config(), video_pb2.RenderRequest()], "empty RenderRequest"),
        ([_config(parts=["guitar"]), video_pb2.RenderRequest(notes=audio_pb2.NoteBatch(part="guitar", final_until=5))], "without audio"),
    ],
)
async def test_bad_input_is_invalid_argument(server, reqs: list[video_pb2.RenderRequest], words: str) -> None:
    details = await expect_error(server.stub, reqs, CODE.INVALID_ARGUMENT)
    assert words in details


async def test_impossible_notes_and_broken_audio_are_invalid_argument(server) -> None:
    six = audio_pb2.Tuning(strings=[40, 45, 50, 55, 59, 64])
    bad_note = audio_pb2.Note(pitch=70, start=0.2, end=0.5, string=6, fret=6)
    reqs = [
        _config(parts=["guitar"]),
        video_pb2.RenderRequest(part=video_pb2.PartInfo(part="guitar", tuning=six)),
        video_pb2.RenderRequest(notes=audio_pb2.NoteBatch(part="guitar", notes=[bad_note], final_until=1)),
        _audio(),
    ]
    assert "string 6" in await expect_error(server.stub, reqs, CODE.INVALID_ARGUMENT)
    nan = np.full((4410, 2), np.nan, dtype=np.float32)
    reqs = [_config(), video_pb2.RenderRequest(audio=make_chunk(nan, 44_100, 0))]
    assert "NaN" in await expect_error(server.stub, reqs, CODE.INVALID_ARGUMENT)
    reqs = [_config(), _audio(0.5), _audio(0.5, offset=100)]
    assert "contiguous" in await expect_error(server.stub, reqs, CODE.INVALID_ARGUMENT)


async def test_parts_not_asked_for_are_left_out_and_a_late_part_still_renders(server, song: Song) -> None:
    reqs = requests_for(song, video_pb2.RenderConfig(**SMALL, parts=["bass"]))
    rendered = await render(server.stub, reqs)
    assert rendered.summary is not None and rendered.summary.frames > song.seconds * 30
    # Without parts, what arrives before the first frame is shown; it still ends cleanly.
    parts = song_parts(song)
    reqs = [_config(), video_pb2.RenderRequest(part=video_pb2.PartInfo(part="guitar", tuning=parts["guitar"][0]))]
    reqs += [_audio(2.0)]
    rendered = await render(server.stub, reqs)
    assert rendered.summary is not None and rendered.summary.seconds == pytest.approx(2.0)


async def test_too_many_streams_are_refused_with_resource_exhausted() -> None:
    config = VideoConfig(diffusion="off", max_streams=1, max_queue=0)
    async with running_server(config) as running:
        release = asyncio.Event()

        async def held():
            yield _config()
            yield _audio(0.5)
            await release.wait()

        first = running.stub.Render(held(), timeout=30)
        assert (await first.read()).HasField("info")
        details = await expect_error(running.stub, [], CODE.RESOURCE_EXHAUSTED, half_close=False)
        assert "busy" in details
        release.set()
        while (await first.read()) is not grpc.aio.EOF:
            pass
        assert (await first.code()) == CODE.OK


async def test_health_is_not_serving_until_warm() -> None:
    async with running_server(warm=False) as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        for name in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        details = await expect_error(running.stub, [], CODE.UNAVAILABLE, half_close=False)
        assert "loading" in details
        await running.server.warm()
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_cancelling_stops_rendering_promptly(song: Song, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[tuple[float, int, int | None]] = []
    original = RenderSession.close

    def spy(self: RenderSession) -> None:
        closed.append((time.perf_counter(), self.next_frame, self.total_frames))
        original(self)

    monkeypatch.setattr(RenderSession, "close", spy)
    config = VideoConfig(diffusion="off", max_streams=1, max_queue=0)
    async with running_server(config) as running:
        closed.clear()  # the warm-up clip's session
        reqs = requests_for(song, video_pb2.RenderConfig(width=1280, height=720, fps=30))
        call = running.stub.Render(iter(reqs), timeout=60)
        async for resp in call:
            if resp.HasField("fragment") and not resp.fragment.init:
                break
        cancelled_at = time.perf_counter()
        call.cancel()
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.02)
        assert closed, "the session was not closed after the cancel"
        at, frames, total = closed[0]
        assert at - cancelled_at < 1.0
        assert total is None or frames < total
        # The slot is free again: a new stream is accepted.
        rendered = await render(running.stub, [_config(), _audio(0.5)])
        assert rendered.summary is not None
