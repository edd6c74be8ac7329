"""Health meanings and graceful drain, through `ServiceServer.serve` as `run_service()` runs it.

A real separator (the DSP model) serves on loopback; the test plays the kubelet (health
Check), a balancer (health Watch) and clients. Shutdown is triggered through the stop
event and through a real SIGTERM to this process, the path a pod's termination takes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from separator_fixtures import server_config

from evalkit.examples import make_song
from separator_svc.dsp import DspModel
from separator_svc.holder import ModelHolder
from separator_svc.server import SERVICE_NAME, create_server
from tabagent import serving
from tabagent.audio import iter_chunks
from tabagent.metrics import ServiceMetrics
from tabagent.v1 import separator_pb2, separator_pb2_grpc

pytestmark = pytest.mark.timeout(120)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE = 20.0


async def check(port: int, name: str = "") -> int | grpc.StatusCode:
    """One probe on a fresh connection, as the kubelet makes it: a status or the error code."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=2.0)
        except grpc.RpcError as exc:
            return exc.code()
    return reply.status


class Stream:
    """A Separate stream the test feeds by hand, so it is still running when shutdown starts."""

    def __init__(self, stub: separator_pb2_grpc.SeparatorStub, song_id: str) -> None:
        self.outbox: asyncio.Queue[separator_pb2.SeparateRequest | None] = asyncio.Queue()
        self.outbox.put_nowait(separator_pb2.SeparateRequest(
            config=separator_pb2.SeparateConfig(model="dsp", song_id=song_id)))
        self.call = stub.Separate(self._requests())
        self.kinds: list[str] = []
        self.summary: separator_pb2.SeparateSummary | None = None

    async def _requests(self) -> AsyncIterator[separator_pb2.SeparateRequest]:
        while (msg := await self.outbox.get()) is not None:
            yield msg

    def send(self, chunks: list) -> None:  # noqa: ANN001 - AudioChunk protos
        for chunk in chunks:
            self.outbox.put_nowait(separator_pb2.SeparateRequest(audio=chunk))

    def close(self) -> None:
        self.outbox.put_nowait(None)

    async def until(self, kind: str) -> None:
        async for response in self.call:
            self.kinds.append(response.WhichOneof("payload"))
            if self.kinds[-1] == kind:
                return
        raise AssertionError(f"the stream ended before a {kind} message")

    async def finish(self) -> separator_pb2.SeparateSummary:
        async for response in self.call:
            self.kinds.append(response.WhichOneof("payload"))
            if self.kinds[-1] == "summary":
                self.summary = response.summary
        assert self.summary is not None
        return self.summary


@pytest.fixture(scope="module")
def chunks() -> list:
    mix = make_song(4.0, seed=21).mix
    return list(iter_chunks(mix.astype(np.float32), 44_100, 0.5))


async def refused(port: int) -> grpc.StatusCode | None:
    """Open a new stream on a new connection; the code it is refused with (None: accepted)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=serving.channel_options()) as channel:
        call = separator_pb2_grpc.SeparatorStub(channel).Separate(iter([separator_pb2.SeparateRequest(
            config=separator_pb2.SeparateConfig(model="dsp", song_id="late"))]), timeout=5.0)
        try:
            async for _ in call:
                pass
        except grpc.RpcError as exc:
            return exc.code()
    return None


@pytest.mark.parametrize("trigger", ["stop-event", "SIGTERM"])
async def test_health_follows_warm_up_and_drain_finishes_running_streams(trigger: str, chunks: list) -> None:
    if trigger == "SIGTERM" and threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    gate = asyncio.Event()

    class SlowHolder(ModelHolder):
        async def warm(self, metrics: ServiceMetrics) -> Any:
            await gate.wait()  # the model "loads" until the test lets it
            return await super().warm(metrics)

    store = SlowHolder.of({"dsp": DspModel()})
    server, port = create_server(server_config(), store, address="127.0.0.1:0")
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(GRACE, stop))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=serving.channel_options())
    stub = separator_pb2_grpc.SeparatorStub(channel)
    try:
        # Start-up: up and answering, NOT_SERVING until warm; streams are UNAVAILABLE.
        for _ in range(50):
            if await check(port) == NOT_SERVING:
                break
            await asyncio.sleep(0.1)
        assert await check(port) == NOT_SERVING
        assert await check(port, SERVICE_NAME) == NOT_SERVING
        assert await refused(port) == grpc.StatusCode.UNAVAILABLE
        gate.set()
        for _ in range(100):
            if await check(port, SERVICE_NAME) == SERVING:
                break
            await asyncio.sleep(0.05)
        assert await check(port, SERVICE_NAME) == SERVING  # ready: warm
        assert await check(port) == SERVING                # live

        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert (await watch.read()).status == SERVING
        stream = Stream(stub, "draining-song")
        await stream.until("info")
        stream.send(chunks[:4])  # 2 of 4 s
        await stream.until("progress")

        started = time.monotonic()
        if trigger == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)  # serve_until_signal's handler sets its event
        else:
            stop.set()
        # Health flips at once: watchers (balancers) hear it before anything else happens.
        update = await asyncio.wait_for(watch.read(), 1.0)
        assert update.status == NOT_SERVING
        assert time.monotonic() - started < 1.0
        # New streams and probes are refused while the running stream drains.
        assert await refused(port) == grpc.StatusCode.UNAVAILABLE
        assert await check(port, SERVICE_NAME) != SERVING
        assert not task.done()
        # The running stream finishes, with all of its audio.
        stream.send(chunks[4:])
        stream.close()
        summary = await asyncio.wait_for(stream.finish(), GRACE)
        assert summary.seconds == pytest.approx(4.0, abs=0.01)
        # Then the server stops, without sitting out the grace period for the watcher.
        await asyncio.wait_for(task, 5.0)
        assert time.monotonic() - started < GRACE / 2
        assert server.health.draining and not server.health.ready
    finally:
        stop.set()
        await channel.close()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
    if trigger == "SIGTERM":  # the handlers are gone again: a later SIGTERM is not swallowed
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


async def test_signal_during_warm_up_stops_at_once() -> None:
    server, health = serving.new_server(["tabagent.test.Slow"])
    port = serving.bind(server, "127.0.0.1:0")
    never = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(serving.serve_until_signal(server, health, never.wait, grace=GRACE, stop=stop))
    for _ in range(50):
        if await check(port) == NOT_SERVING:
            break
        await asyncio.sleep(0.1)
    assert await check(port) == NOT_SERVING
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5.0)
    assert time.monotonic() - started < 2.0
    assert health.draining and not health.ready
    await health.set_serving(True)  # a warm-up finishing late cannot put it back in rotation
    assert not health.ready


async def test_drain_cancels_streams_that_outlive_the_grace() -> None:
    """A stream still running when the grace period ends is cancelled; the drain returns."""
    server, health = serving.new_server(["tabagent.test.Hang"])

    async def hang(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"started"
        await asyncio.Event().wait()

    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tabagent.test.Hang", {"Hang": grpc.stream_stream_rpc_method_handler(hang)})])
    port = serving.bind(server, "127.0.0.1:0")
    await server.start()
    await health.set_serving(True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream("/tabagent.test.Hang/Hang")(iter([b"x"]))
        assert await call.read() == b"started"
        assert health.in_flight == 1
        took = await serving.drain(server, health, grace=0.5)
        assert 0.4 < took < 3.0
        with pytest.raises(grpc.RpcError):
            await call.read()
    assert health.in_flight == 0
